"""The DataLoader levers: worker processes, persistent workers and pinned memory, on the embedded digits."""

from __future__ import annotations

from bench_config import Bench
from report import Section
from timing import interleaved
from genlab.data.digits import DigitsDataModule

EPOCHS = 3  # persistent workers only pay from the second epoch on


def variants(b: Bench) -> dict[str, dict]:
    """DataModule settings to compare; pinned memory only helps copies to a GPU."""
    out = {"0 workers": dict(num_workers=0),
           "2 workers": dict(num_workers=2, persistent_workers=False),
           "2 persistent workers": dict(num_workers=2, persistent_workers=True)}
    if b.cuda:
        out["0 workers, pin_memory"] = dict(num_workers=0, pin_memory=True)
        out["2 persistent workers, pin_memory"] = dict(num_workers=2, persistent_workers=True, pin_memory=True)
    return {k: {"pin_memory": False, **v} for k, v in out.items()}


def epochs_fn(b: Bench, settings: dict):  # noqa: ANN201: a timing closure
    """A call that builds the train DataLoader and runs EPOCHS epochs through it onto the device."""
    batch = 16 if b.quick else 128
    datamodule = DigitsDataModule(batch_size=batch, **settings)
    datamodule.setup("fit")

    def run() -> None:
        loader = datamodule.train_dataloader()
        for _ in range(1 if b.quick else EPOCHS):
            for x, _ in loader:
                x.to(b.device, non_blocking=True)

    return run, batch


def run(b: Bench) -> Section:
    section = Section("Speed levers: DataLoader settings")
    calls = {name: epochs_fn(b, s)[0] for name, s in variants(b).items()}
    timings = interleaved(calls, b.rounds, 1, b.device)
    epochs = 1 if b.quick else EPOCHS
    base = timings["0 workers"].median
    batch = epochs_fn(b, {})[1]
    epoch_word = "epoch" if epochs == 1 else "epochs"
    section.lines += [f"{epochs} {epoch_word} of the embedded digits training set (16x16, batch {batch}) "
                      f"from DataLoader creation to the last batch on {b.device}; medians of {b.rounds} rounds. "
                      "Config keys: data.num_workers, data.persistent_workers, data.pin_memory.", ""]
    section.table(["DataLoader", "s per run", "speed-up vs 0 workers"],
                  [[k, f"{t.median:.2f}", f"{base / t.median:.2f}"] for k, t in timings.items()])
    return section

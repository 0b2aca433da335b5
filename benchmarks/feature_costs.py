"""What one evaluation costs with each feature network: images per second of the feature forward on this machine.

The networks have the real architectures with random weights (the compute does not depend on the weights, and
offline machines have no pretrained files): Inception-v3 (torch-fidelity), DINOv2 ViT-L/14 at 224 px (genlab's
timm build) and CLIP ViT-L/14 at 336 px (torch-fidelity's). Usage:

    python benchmarks/feature_costs.py [--batch 16] [--repeats 3] [--out benchmarks/results/feature_costs.md]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

from genlab.runs.provenance import describe_machine


def inception() -> nn.Module:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    # The constructor always loads weights: hand it none and skip the strict load (the forward is what is timed).
    FeatureExtractorInceptionV3.load_state_dict = lambda self, *a, **k: None  # type: ignore[method-assign]
    import torch_fidelity.feature_extractor_inceptionv3 as module

    module.load_state_dict_from_url = lambda *a, **k: {}
    return FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).eval()


def dinov2_vit_l14() -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    from genlab.metrics.dinov2 import DinoV2FeatureExtractor

    extractor = DinoV2FeatureExtractor.__new__(DinoV2FeatureExtractor)
    nn.Module.__init__(extractor)
    extractor.name, extractor.features_list = "genlab-dinov2", ["dinov2"]
    extractor.feature_extractor_internal_dtype = torch.float32
    extractor.model = VisionTransformer(img_size=224, patch_size=14, embed_dim=1024, depth=24, num_heads=16,
                                        init_values=1.0, num_classes=0)
    return extractor.eval()


def clip_vit_l14_336() -> nn.Module:
    from torch_fidelity.feature_extractor_clip import VisionTransformer

    class CLIP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.visual = VisionTransformer(input_resolution=336, patch_size=14, width=1024, layers=24, heads=16,
                                            output_dim=768)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.nn.functional.interpolate(x.float(), size=(336, 336), mode="bilinear")
            return self.visual(x)

    return CLIP().eval()


NETWORKS = {"inception (299 px)": inception, "dinov2 ViT-L/14 (224 px)": dinov2_vit_l14,
            "clip ViT-L/14 (336 px)": clip_vit_l14_336}


def images_per_second(net: nn.Module, batch: int, repeats: int) -> float:
    x = torch.randint(0, 256, (batch, 3, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        net(x)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            net(x)
    return batch * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    a = parser.parse_args()
    machine = describe_machine("cpu")
    lines = ["| features | images/s | 1,000 samples | 10,000 reference images (once, cached) |", "|---|---|---|---|"]
    for name, build in NETWORKS.items():
        rate = images_per_second(build(), a.batch, a.repeats)
        lines.append(f"| {name} | {rate:.1f} | {1000 / rate / 60:.1f} min | {10000 / rate / 60:.0f} min |")
        print(lines[-1], flush=True)
    text = "\n".join([f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['torch_threads']} torch threads; "
                      f"torch {machine['torch']}; batch {a.batch}, {a.repeats} timed batches.", "", *lines, ""])
    if a.out:
        Path(a.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()

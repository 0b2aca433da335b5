"""Read an offline W&B run back: the history rows and the config that wandb wrote to run-<id>.wandb.

The file is a 7-byte header, then 32 KiB blocks of chunks <crc u32, length u16, type u8> + bytes (LevelDB log
format: type 1 a whole record, 2/3/4 its first/middle/last part); each record is a wandb_internal_pb2.Record.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32 * 1024
HEADER = 7


def _records(path: Path) -> Iterator[Any]:
    data = path.read_bytes()
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if length == 0 and kind == 0:  # zero padding to the end of the block
            pos += left
            continue
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def read_offline_run(run_file: Path, timeout: float = 60.0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(history rows, config) of one offline run file, once its exit record is written (wandb's service process
    may still be writing just after the training process ended)."""
    deadline = time.time() + timeout
    while not any(r.WhichOneof("record_type") == "exit" for r in _records(run_file)):
        if time.time() > deadline:
            raise TimeoutError(f"{run_file} has no exit record after {timeout} s")
        time.sleep(0.5)
    history: list[dict[str, Any]] = []
    config: dict[str, Any] = {}
    for record in _records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "config":
            config.update({_key(i): json.loads(i.value_json) for i in record.config.update})
    return history, config


def read_run_info(run_file: Path) -> dict[str, Any]:
    """The run record's name, group and id, and the metrics defined with a summary (name -> summary kinds)."""
    info: dict[str, Any] = {"metrics": {}}
    for record in _records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            info.update(name=record.run.display_name, group=record.run.run_group, id=record.run.run_id)
        elif kind == "metric":
            summary = record.metric.summary
            info["metrics"][record.metric.name] = [k for k in ("min", "max", "mean", "last") if getattr(summary, k)]
    return info

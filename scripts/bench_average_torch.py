#!/usr/bin/env python3
"""The PyTorch baseline for scripts/bench_average.sh: fairseq-style checkpoint averaging
(fairseq's scripts/average_checkpoints.py): load each checkpoint whole, accumulate in fp32,
divide, cast back to the input dtype and save with safetensors.

usage: bench_average_torch.py OUT_FILE CKPT...   (each CKPT a pytorch_model.bin or *.safetensors)
"""
import sys

import torch
from safetensors.torch import load_file, save_file


def load(path):
    if path.endswith(".safetensors"):
        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def main():
    out, paths = sys.argv[1], sys.argv[2:]
    acc, dtypes = {}, {}
    for p in paths:
        sd = load(p)
        for k, v in sd.items():
            if not v.is_floating_point():
                acc.setdefault(k, v)  # buffers (masks): kept from the first checkpoint
                continue
            dtypes[k] = v.dtype
            if k in acc:
                acc[k] += v.float()
            else:
                acc[k] = v.float().clone()
        del sd
    n = len(paths)
    for k, dt in dtypes.items():
        acc[k] = acc[k].div_(n).to(dt)
    save_file(acc, out, metadata={"format": "pt"})


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Checks a `lawa demo` dir with the Hugging Face stack (not a test: needs torch + transformers).

Every checkpoint must load into transformers' GPTNeoXForCausalLM with no missing or unexpected
weights, and its tokenizer.json into Python `tokenizers` (and transformers' fast tokenizer) with
the same ids. Prints the held-out perplexity of each checkpoint with lawa eval's convention
(consecutive non-overlapping windows of max_position_embeddings tokens, every token after the
first in each window predicted), so the numbers can be compared with `lawa eval`.

usage: check_demo_hf.py DEMO_DIR [--max-tokens N] [--every N]
"""
import argparse
import json
import math
import os

import torch
from tokenizers import Tokenizer
from transformers import GPTNeoXForCausalLM, PreTrainedTokenizerFast


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("demo")
    ap.add_argument("--max-tokens", type=int, default=32768)
    ap.add_argument("--every", type=int, default=1, help="check every Nth checkpoint")
    a = ap.parse_args()
    torch.set_num_threads(1)
    traj = json.load(open(os.path.join(a.demo, "trajectory.json")))
    steps = traj["checkpoint_steps"]
    text = open(os.path.join(a.demo, "heldout.txt"), encoding="utf-8").read()
    ids = None
    for s in steps[:: a.every] + ([steps[-1]] if (len(steps) - 1) % a.every else []):
        d = os.path.join(a.demo, f"step{s}")
        tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        fast = PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, "tokenizer.json"))
        these = tok.encode(text, add_special_tokens=False).ids
        assert fast(text[:2000], add_special_tokens=False)["input_ids"] == tok.encode(
            text[:2000], add_special_tokens=False
        ).ids
        assert tok.decode(these[:500]) == fast.decode(these[:500])
        if ids is None:
            ids = these[: a.max_tokens]
        model, info = GPTNeoXForCausalLM.from_pretrained(
            d, output_loading_info=True, attn_implementation="eager"
        )
        bad = {k: v for k, v in info.items() if v and k != "mismatched_keys"} or info.get(
            "mismatched_keys"
        )
        assert not bad, f"{d}: {info}"
        ctx = model.config.max_position_embeddings
        n = len(ids) // ctx
        x = torch.tensor(ids[: n * ctx]).view(n, ctx)
        with torch.no_grad():
            nll = 0.0
            for i in range(0, n, 64):
                logits = model(x[i : i + 64]).logits.float()
                lp = torch.log_softmax(logits[:, :-1], -1)
                nll -= lp.gather(-1, x[i : i + 64, 1:, None]).sum().item()
        ppl = math.exp(nll / (n * (ctx - 1)))
        print(f"step{s}: loads cleanly; held-out ppl {ppl:.4f} ({n * (ctx - 1)} tokens)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The demo's story measured by the reference tools (not a test: needs torch, transformers, lm_eval).

For every checkpoint of a `lawa demo` dir (or every Nth), the newest checkpoint against the
uniform average of the latest K (LAWA), averaged here in PyTorch (fp32 state dicts) and evaluated
with Hugging Face transformers:
  - held-out perplexity with lawa eval's convention (consecutive non-overlapping windows of
    max_position_embeddings tokens of heldout.txt, every token after the first predicted);
  - the cloze task `cloze.jsonl` through lm-evaluation-harness itself: its own `lambada_openai`
    task definition (prompt, target, metrics) with the dataset pointed at the local file.
Prints a Markdown table (the README's demo table comes from it).

usage: HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 \
    /work/pyref/bin/python scripts/demo_story_hf.py DEMO_DIR [--k 5] [--every 1] [--max-tokens N]
"""
import argparse
import json
import math
import os

import torch
import yaml
from transformers import GPTNeoXForCausalLM, PreTrainedTokenizerFast


def lambada_task(cloze_path):
    """lm-eval's own lambada_openai.yaml, with only the dataset moved to the local JSONL."""
    import lm_eval

    src = os.path.join(os.path.dirname(lm_eval.__file__), "tasks", "lambada", "lambada_openai.yaml")
    cfg = yaml.safe_load(open(src))
    cfg.pop("tag", None)
    cfg.update(
        task="lambada_openai_demo",
        dataset_path="json",
        dataset_name=None,
        dataset_kwargs={"data_files": {"test": cloze_path}},
    )
    return cfg


def heldout_ppl(model, ids):
    ctx = model.config.max_position_embeddings
    n = len(ids) // ctx
    x = torch.tensor(ids[: n * ctx]).view(n, ctx)
    nll = 0.0
    with torch.no_grad():
        for i in range(0, n, 64):
            logits = model(x[i : i + 64]).logits.float()
            lp = torch.log_softmax(logits[:, :-1], -1)
            nll -= lp.gather(-1, x[i : i + 64, 1:, None]).sum().item()
    return math.exp(nll / (n * (ctx - 1)))


def cloze(model, tok, task):
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=64, max_length=model.config.max_position_embeddings)
    r = simple_evaluate(model=lm, tasks=[task], verbosity="ERROR", bootstrap_iters=0)["results"][task["task"]]
    return r["acc,none"], r["perplexity,none"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("demo")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--max-tokens", type=int, default=32768)
    a = ap.parse_args()
    torch.set_num_threads(2)
    traj = json.load(open(os.path.join(a.demo, "trajectory.json")))
    steps = traj["checkpoint_steps"]
    task = lambada_task(os.path.abspath(os.path.join(a.demo, "cloze.jsonl")))
    first = os.path.join(a.demo, f"step{steps[0]}")
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(first, "tokenizer.json"))
    tok.eos_token = tok.convert_ids_to_tokens(0)
    text = open(os.path.join(a.demo, "heldout.txt"), encoding="utf-8").read()
    ids = tok(text, add_special_tokens=False)["input_ids"][: a.max_tokens]
    states = {}

    def load(s):
        if s not in states:
            states[s] = GPTNeoXForCausalLM.from_pretrained(
                os.path.join(a.demo, f"step{s}"), attn_implementation="eager"
            ).state_dict()
        return states[s]

    print(f"| step | newest ppl | LAWA k={a.k} ppl | gain | newest cloze acc | LAWA cloze acc |")
    print("|---:|---:|---:|---:|---:|---:|")
    model = GPTNeoXForCausalLM.from_pretrained(first, attn_implementation="eager").eval()
    for i, s in enumerate(steps):
        if i + 1 < a.k or (i + 1 - a.k) % a.every:
            continue
        window = [load(t) for t in steps[i + 1 - a.k : i + 1]]
        model.load_state_dict(load(s))
        raw_ppl = heldout_ppl(model, ids)
        raw_acc, _ = cloze(model, tok, task)
        avg = {n: sum(w[n].float() for w in window) / a.k for n in window[-1]}
        model.load_state_dict(avg)
        lawa_ppl = heldout_ppl(model, ids)
        lawa_acc, _ = cloze(model, tok, task)
        gain = 100 * (raw_ppl - lawa_ppl) / raw_ppl
        print(f"| {s} | {raw_ppl:.2f} | {lawa_ppl:.2f} | {gain:+.1f}% | {100 * raw_acc:.1f}% | {100 * lawa_acc:.1f}% |", flush=True)
        for t in list(states):
            if t <= steps[i + 1 - a.k]:
                del states[t]


if __name__ == "__main__":
    main()

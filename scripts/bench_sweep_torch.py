#!/usr/bin/env python3
"""Reference side of scripts/bench_sweep.sh: the PyTorch loop a researcher would write for a LAWA
sweep, on CPU.

    bench_sweep_torch.py generate RUN_DIR N            # N Pythia-70M-shaped f16 checkpoints + tokens
    bench_sweep_torch.py sweep RUN_DIR TOKENS CTX BATCH K THREADS

`generate` writes RUN_DIR/step{1000*i}/ (config.json, model.safetensors in f16) for i = 1..N: one
random GPTNeoXForCausalLM (seed 0) plus a drift that grows with the step, so that windows differ,
and RUN_DIR/tokens.bin (uint16 ids).

`sweep` does, for every window of K consecutive checkpoints (ending at the K-th to the last), what
fairseq's scripts/average_checkpoints.py does (load each checkpoint whole, accumulate in fp32,
divide, cast back to the input dtype, save), then loads the saved average with transformers and
evaluates it as scripts/bench_eval_hf.py does (lawa's window convention, f32, NLL from the
log-softmax in f32). Prints one JSON line: windows, seconds, windows_per_s, bytes_read (checkpoint
bytes loaded), mean_nll per window end step.
"""
import json
import os
import sys
import tempfile
import time


def generate(run, n):
    import numpy as np
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    cfg = GPTNeoXConfig(vocab_size=50304, max_position_embeddings=2048, rotary_pct=0.25,
                        rotary_emb_base=10000, use_parallel_residual=True, tie_word_embeddings=False,
                        layer_norm_eps=1e-5, hidden_act="gelu", bos_token_id=0, eos_token_id=0,
                        hidden_size=512, num_hidden_layers=6, num_attention_heads=8,
                        intermediate_size=2048)
    base = GPTNeoXForCausalLM(cfg).float()
    drift = {k: torch.randn_like(v) * 0.002 for k, v in base.state_dict().items() if v.is_floating_point()}
    for i in range(1, n + 1):
        d = os.path.join(run, f"step{1000 * i}")
        if os.path.exists(os.path.join(d, "model.safetensors")):
            continue
        m = GPTNeoXForCausalLM(cfg)
        sd = {k: (v + drift[k] * i if k in drift else v) for k, v in base.state_dict().items()}
        m.load_state_dict(sd)
        m.half().save_pretrained(d, safe_serialization=True)
        print(f"wrote {d}", file=sys.stderr)
    toks = os.path.join(run, "tokens.bin")
    if not os.path.exists(toks):
        rng = np.random.default_rng(0)
        rng.integers(0, 50304, size=1 << 16, dtype=np.uint16).tofile(toks)


def average(paths, out_dir):
    """fairseq-style: fp32 accumulation, divide, cast back; saved with safetensors."""
    import torch
    from safetensors.torch import load_file, save_file

    acc, dtypes = {}, {}
    for p in paths:
        sd = load_file(p)
        for k, v in sd.items():
            if not v.is_floating_point():
                acc.setdefault(k, v)
                continue
            dtypes[k] = v.dtype
            if k in acc:
                acc[k] += v.to(torch.float32)
            else:
                acc[k] = v.to(torch.float32).clone()
        del sd
    out = {k: (v / len(paths)).to(dtypes[k]) if k in dtypes else v for k, v in acc.items()}
    save_file(out, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})


def evaluate(model_dir, ids, ctx, batch):
    import torch
    from transformers import GPTNeoXForCausalLM

    model = GPTNeoXForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    n = len(ids) // ctx
    x = torch.tensor(ids[: n * ctx].astype("int64")).view(n, ctx)
    total, count = 0.0, 0
    with torch.inference_mode():
        for b in range(0, n, batch):
            xb = x[b : b + batch]
            logits = model(xb).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            nll = -logp.gather(-1, xb[:, 1:].unsqueeze(-1)).squeeze(-1)
            total += nll.double().sum().item()
            count += nll.numel()
    return total / count


def sweep(run, tokens, ctx, batch, k, threads):
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    steps = sorted(int(d[4:]) for d in os.listdir(run) if d.startswith("step"))
    ids = np.fromfile(tokens, dtype=np.uint16)
    t0 = time.perf_counter()
    nlls, read = {}, 0
    for end in range(k - 1, len(steps)):
        window = steps[end - k + 1 : end + 1]
        paths = [os.path.join(run, f"step{s}", "model.safetensors") for s in window]
        if os.environ.get("LAWA_BENCH_DROP") == "1":
            # bench_sweep.sh COLD=1: every window reads from the disk (root only).
            os.system("sync; echo 3 > /proc/sys/vm/drop_caches")
        read += sum(os.path.getsize(p) for p in paths)
        with tempfile.TemporaryDirectory() as out:
            average(paths, out)
            cfg = os.path.join(run, f"step{window[-1]}", "config.json")
            with open(cfg) as f, open(os.path.join(out, "config.json"), "w") as g:
                g.write(f.read())
            nlls[window[-1]] = evaluate(out, ids, ctx, batch)
    secs = time.perf_counter() - t0
    print(json.dumps({"windows": len(nlls), "seconds": secs, "windows_per_s": len(nlls) / secs,
                      "bytes_read": read, "mean_nll": nlls}))


if __name__ == "__main__":
    if sys.argv[1] == "generate":
        generate(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "sweep":
        run, tokens, ctx, batch, k, threads = sys.argv[2:8]
        sweep(run, tokens, int(ctx), int(batch), int(k), int(threads))
    else:
        sys.exit(__doc__)

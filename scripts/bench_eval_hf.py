#!/usr/bin/env python3
"""Reference side of scripts/bench_eval.sh: Hugging Face transformers on PyTorch (CPU).

    bench_eval_hf.py generate OUT_DIR          # Pythia-70M/160M- and a Llama-shaped random f32 model + tokens
    bench_eval_hf.py eval MODEL_DIR TOKENS CTX BATCH THREADS

`eval` applies lawa's window convention to the same uint16 token file (consecutive
non-overlapping windows of CTX, remainder dropped; every token after the first of a window is
predicted), runs the model (AutoModelForCausalLM) with transformers' default attention in f32, takes the
log-softmax NLL in f32, and prints one JSON line: tokens_per_s (tokens run through the model
per second of the forward + NLL loop, as lawa reports it), mean_nll, ppl.
"""
import json
import os
import sys
import time


def generate(out):
    import numpy as np
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM

    def neox(**shape):
        return GPTNeoXForCausalLM(GPTNeoXConfig(
            vocab_size=50304, max_position_embeddings=2048, rotary_pct=0.25, rotary_emb_base=10000,
            use_parallel_residual=True, tie_word_embeddings=False, layer_norm_eps=1e-5, hidden_act="gelu",
            bos_token_id=0, eos_token_id=0, **shape))

    def llama(**shape):
        return LlamaForCausalLM(LlamaConfig(
            vocab_size=50304, max_position_embeddings=2048, rope_theta=10000.0, rms_norm_eps=1e-5,
            hidden_act="silu", tie_word_embeddings=True, bos_token_id=0, eos_token_id=0, **shape))

    shapes = {
        # EleutherAI/pythia-70m and pythia-160m shapes.
        "pythia-70m": lambda: neox(hidden_size=512, num_hidden_layers=6, num_attention_heads=8, intermediate_size=2048),
        "pythia-160m": lambda: neox(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
        # A Llama of the same width and depth as Pythia-70M, with GQA (8 query, 2 kv heads),
        # SwiGLU and a tied head: the decoder every Llama-like family runs through.
        "llama-70m": lambda: llama(hidden_size=512, num_hidden_layers=6, num_attention_heads=8,
                                   num_key_value_heads=2, intermediate_size=1536),
    }
    for name, make in shapes.items():
        d = os.path.join(out, name)
        if os.path.exists(os.path.join(d, "model.safetensors")):
            continue
        torch.manual_seed(0)
        model = make().float()
        model.save_pretrained(d, safe_serialization=True)
        print(f"wrote {d}", file=sys.stderr)
    toks = os.path.join(out, "tokens.bin")
    if not os.path.exists(toks):
        rng = np.random.default_rng(0)
        rng.integers(0, 50304, size=1 << 16, dtype=np.uint16).tofile(toks)


def evaluate(model_dir, tokens, ctx, batch, threads):
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    ids = np.fromfile(tokens, dtype=np.uint16).astype(np.int64)
    n_win = len(ids) // ctx
    windows = torch.from_numpy(ids[: n_win * ctx]).view(n_win, ctx)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    total = 0.0
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, n_win, batch):
            x = windows[i:i + batch]
            logits = model(x).logits[:, :-1].float()
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum")
            total += nll.item()
    seconds = time.perf_counter() - start
    mean = total / (n_win * (ctx - 1))
    print(json.dumps({"tokens_per_s": n_win * ctx / seconds, "mean_nll": mean, "ppl": float(np.exp(mean)),
                      "attn": model.config._attn_implementation, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    if sys.argv[1] == "generate":
        generate(sys.argv[2])
    elif sys.argv[1] == "eval":
        evaluate(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    else:
        sys.exit(__doc__)

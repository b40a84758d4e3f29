#!/usr/bin/env python3
"""PyTorch side of scripts/gpu-check.sh (run on the GPU machine, where torch and transformers
are installed). Every subcommand prints one JSON line on stdout.

  gen-ckpts DIR K            K Pythia-1B-shaped fp16 checkpoints DIR/step{1000*i}/ (~2 GB each)
  avg-torch OUT CKPT...      fairseq-style average on the GPU: load each checkpoint to the GPU,
                             accumulate in fp32, divide, cast back, save_file; seconds
  gen-model DIR SHAPE        a random-weight GPTNeoXForCausalLM (pythia-160m | pythia-1b), fp16
  gen-tokens FILE N          N random uint16 token ids below 50000
  eval-torch DIR TOKENS CTX BATCH
                             transformers eager fp16 with SDPA attention: next-token NLL over
                             windows of CTX tokens, batches of BATCH; tokens/s and perplexity
  compare A B                max |a - b| over the tensors of two safetensors files
"""
import json
import math
import os
import sys
import time

import numpy as np
import torch

SHAPES = {
    # hidden, layers, heads, intermediate
    "pythia-160m": (768, 12, 12, 3072),
    "pythia-1b": (2048, 16, 8, 8192),
}
VOCAB = 50304
# GPU_BENCH_DEVICE=cpu and GPU_BENCH_SHAPE=pythia-160m make a small dry run possible without a GPU.
DEV = os.environ.get("GPU_BENCH_DEVICE", "cuda")
CKPT_SHAPE = os.environ.get("GPU_BENCH_SHAPE", "pythia-1b")


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def neox_config(shape):
    from transformers import GPTNeoXConfig

    h, layers, heads, inter = SHAPES[shape]
    return GPTNeoXConfig(
        vocab_size=VOCAB, hidden_size=h, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=inter, max_position_embeddings=2048, rotary_pct=0.25,
        rotary_emb_base=10000, use_parallel_residual=True, tie_word_embeddings=False,
        torch_dtype="float16",
    )


def gen_ckpts(root, k):
    from safetensors.torch import save_file

    h, layers, _, inter = SHAPES[CKPT_SHAPE]
    shapes = {"gpt_neox.embed_in.weight": (VOCAB, h), "embed_out.weight": (VOCAB, h),
              "gpt_neox.final_layer_norm.weight": (h,), "gpt_neox.final_layer_norm.bias": (h,)}
    for i in range(layers):
        p = f"gpt_neox.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (h,), p + "input_layernorm.bias": (h,),
            p + "post_attention_layernorm.weight": (h,), p + "post_attention_layernorm.bias": (h,),
            p + "attention.query_key_value.weight": (3 * h, h), p + "attention.query_key_value.bias": (3 * h,),
            p + "attention.dense.weight": (h, h), p + "attention.dense.bias": (h,),
            p + "mlp.dense_h_to_4h.weight": (inter, h), p + "mlp.dense_h_to_4h.bias": (inter,),
            p + "mlp.dense_4h_to_h.weight": (h, inter), p + "mlp.dense_4h_to_h.bias": (h,),
        })
    cfg = neox_config(CKPT_SHAPE).to_dict()
    t0 = time.time()
    for s in range(1, k + 1):
        d = os.path.join(root, f"step{1000 * s}")
        os.makedirs(d, exist_ok=True)
        g = torch.Generator(device=DEV).manual_seed(s)
        sd = {n: (0.02 * torch.randn(sh, generator=g, device=DEV)).half().cpu() for n, sh in shapes.items()}
        save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f)
    print(json.dumps({"generated": k, "seconds": time.time() - t0}))


def avg_torch(out, paths):
    from safetensors.torch import load_file, save_file

    sync()
    t0 = time.time()
    acc, dtypes = {}, {}
    for p in paths:
        sd = load_file(p, device=DEV)
        for name, v in sd.items():
            if not v.is_floating_point():
                acc.setdefault(name, v)
                continue
            dtypes[name] = v.dtype
            if name in acc:
                acc[name] += v.float()
            else:
                acc[name] = v.float()
        del sd
    for name, dt in dtypes.items():
        acc[name] = acc[name].div_(len(paths)).to(dt)
    save_file({n: v.cpu() for n, v in acc.items()}, out, metadata={"format": "pt"})
    print(json.dumps({"seconds": time.time() - t0}))


def gen_model(root, shape):
    from transformers import GPTNeoXForCausalLM

    torch.manual_seed(0)
    with torch.device(DEV):
        model = GPTNeoXForCausalLM(neox_config(shape)).half()
    model.save_pretrained(root, safe_serialization=True)
    print(json.dumps({"model": shape, "parameters": sum(p.numel() for p in model.parameters())}))


def gen_tokens(path, n):
    ids = np.random.default_rng(0).integers(0, 50000, size=n, dtype=np.uint16)
    ids.tofile(path)
    print(json.dumps({"tokens": n}))


@torch.inference_mode()
def eval_torch(root, tokens, ctx, batch):
    from transformers import GPTNeoXForCausalLM

    model = GPTNeoXForCausalLM.from_pretrained(
        root, torch_dtype=torch.float16, attn_implementation="sdpa").to(DEV).eval()
    ids = torch.from_numpy(np.fromfile(tokens, dtype=np.uint16).astype(np.int64))
    windows = ids[: len(ids) // ctx * ctx].view(-1, ctx).to(DEV)

    def run():
        total, count = 0.0, 0
        for i in range(0, len(windows), batch):
            x = windows[i : i + batch]
            logits = model(x).logits[:, :-1].float()
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum")
            total += nll.item()
            count += x[:, 1:].numel()
        return total, count

    run()  # warm-up: cuBLAS handles, SDPA kernel choice
    sync()
    t0 = time.time()
    total, count = run()
    sync()
    dt = time.time() - t0
    print(json.dumps({"tokens_per_s": windows.numel() / dt, "ppl": math.exp(total / count),
                      "seconds": dt}))


def compare(a, b):
    from safetensors.torch import load_file

    x, y = load_file(a), load_file(b)
    assert x.keys() == y.keys(), "different tensors"
    worst = max(float((x[k].float() - y[k].float()).abs().max()) for k in x if x[k].is_floating_point())
    print(json.dumps({"max_abs_diff": worst}))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "gen-ckpts":
        gen_ckpts(args[0], int(args[1]))
    elif cmd == "avg-torch":
        avg_torch(args[0], args[1:])
    elif cmd == "gen-model":
        gen_model(args[0], args[1])
    elif cmd == "gen-tokens":
        gen_tokens(args[0], int(args[1]))
    elif cmd == "eval-torch":
        eval_torch(args[0], args[1], int(args[2]), int(args[3]))
    elif cmd == "compare":
        compare(args[0], args[1])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()

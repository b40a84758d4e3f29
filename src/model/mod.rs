//! GPT-NeoX (Pythia) in candle: config, eval forward with fused ops, training forward with differentiable ops.

//! The built-in demo run: corpus generator, tokenizer training, AdamW training loop, checkpoint and metrics writing.

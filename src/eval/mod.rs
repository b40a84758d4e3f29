//! Evaluation: token streams, windows, NLL / perplexity / bits per byte / KL against another model.

"""The models: our Llama (logits plus the last layer's attention scores), any other
family mlx-lm runs, and the KV caches they decode with."""

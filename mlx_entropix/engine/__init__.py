"""The engine: prompts in, events out. Generation loops, continuous batching, fork
exploration, one row's event stream, the answer reader."""

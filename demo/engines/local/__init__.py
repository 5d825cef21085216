"""A checkpoint run in this process with transformers: the engine (`engine`), its per-session KV
cache and vision-encoding reuse (`kv_reuse`), prompts read in chunks Stop interrupts (`prefill`),
the stream of tokens (`streaming`), int8 and int4 weights and precision (`int8`, `int4`,
`precision`), the quantized weights kept on disk for the next start (`quantized_store`), and the
CPU engine's one torch thread (`torch_thread`)."""

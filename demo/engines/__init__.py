"""The engines that answer: the interface (`base`), the backends registered in one place
(`backends`), the engine while it downloads and loads (`slot`), what an answer sends the model
(`model_input`), an OpenAI-compatible server (`server`), ZeroGPU (`zerogpu`); a checkpoint run here
(`local/`), a Hub model fetched before it loads (`hub/`), and the offline tiny checkpoints (`tiny/`)."""

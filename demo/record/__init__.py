"""The conversation and what it owns: the record itself (`conversation`), the limits it is held
to (`limits`, `held`), its files and sessions (`sessions`, `uploads`), saving and loading it
(`session_file`), and how a streamed answer is written into it (`reasoning`). No Gradio, no torch."""

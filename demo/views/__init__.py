"""What the page shows, derived from the record by pure functions: the chat (`chat`), each turn's
boxes drawn (`annotations`), inert text (`markup`), the inspector's view and ground truth
(`inspector`, `ground_truth`), and the exports (`export`). No Gradio, no torch."""

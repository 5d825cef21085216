"""The Gradio page: the layout and its wiring (`ui`), the event handlers (`handlers`), the
settings (`settings`), the page's texts, examples and assets (`texts`, `page.js`, `page.css`) and
the inspector's component (`inspector_ui`, `inspector.js`, `inspector.css`)."""

"""The Gradio page: the layout and its wiring (`ui`), the page's events (`chat_page`), the event
handlers (`handlers`) and the answers being written (`writing`), the settings (`settings`), the
page's texts, examples and assets (`texts`, `page.js`, `page.css`), the conversations kept in the
browser (`history.js`, `history.css`) and the inspector's component (`inspector_ui`,
`inspector.js`, `inspector.css`)."""

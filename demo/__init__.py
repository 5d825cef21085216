"""The app, by role, each folder importing only those before it: `media` (pictures and videos),
`record` (the conversation), `views` (what the page shows) and `engines` (what answers), `web`
(in front of Gradio's routes), `page` (the Gradio page); `flags` is the command line."""

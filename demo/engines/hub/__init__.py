"""A Hub model fetched before it loads: planning and running the download (`download`), watching
its progress on disk (`download_watch`, `progress`), and the Hub's errors as one sentence (`errors`)."""

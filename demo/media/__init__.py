"""Pictures and videos: decoding uploads within bounds (`pictures`, `budget`, `errors`), Qwen's
resize rule (`resize`), and a video's sampled frames, planned and read with PyAV (`video`,
`video_plan`, `video_seek`, `video_decode`)."""

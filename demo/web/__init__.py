"""What stands between strangers and the app: owner cookies, fair shares, the page's policy.

`serve.launch` queues and launches the Blocks behind `guard.Guard`; `policy` holds the
Content-Security-Policy and the cookie; `owners` remembers whose each session is; `files`
decides who may fetch which file.
"""

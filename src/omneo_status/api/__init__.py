"""The Omneo API: the endpoints, paging in either dialect, one request sent, checked, traced
and retried, the pacing, the tool's own HTTP/1.1 transport, and the read-only probe."""

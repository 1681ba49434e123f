"""RESP2/RESP3, sans-I/O: the Redis protocol's command reader, reply encoder and reply reader,
and the table that maps Redis commands onto meshcache's op table (docs/resp.md)."""

"""The SQL that makes PostgreSQL announce changed keys to the nodes (LISTEN/NOTIFY).

:func:`trigger_sql` is what ``meshcache loader sql NAME`` prints: one generic trigger function,
``meshcache_notify()``, and a row trigger on the table that NOTIFYs the namespace's channel
with the key column's text for every INSERT, UPDATE and DELETE (an UPDATE that changes the
key announces the old key and the new one). An INSERT is announced too: a node may remember
the key as missing (negative caching). Payloads are the key as text, so the key column should
be text, an integer or a uuid, as the loader query's ``$1`` takes it.
"""

from __future__ import annotations

import re

from meshcache.errors import ConfigError

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")

FUNCTION = """CREATE OR REPLACE FUNCTION meshcache_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
-- TG_ARGV[0]: the channel; TG_ARGV[1]: the key column. The payload is the key as text.
DECLARE
  old_key text;
  new_key text;
BEGIN
  IF TG_OP <> 'INSERT' THEN
    old_key := to_jsonb(OLD) ->> TG_ARGV[1];
    PERFORM pg_notify(TG_ARGV[0], old_key);
  END IF;
  IF TG_OP <> 'DELETE' THEN
    new_key := to_jsonb(NEW) ->> TG_ARGV[1];
    IF old_key IS DISTINCT FROM new_key THEN
      PERFORM pg_notify(TG_ARGV[0], new_key);
    END IF;
  END IF;
  RETURN NULL;
END $$;"""


def quote_identifier(name: str) -> str:
    """``name`` (``table`` or ``schema.table``) double-quoted part by part.

    Raises:
        ConfigError: a part is not a plain identifier.
    """
    parts = name.split(".")
    if len(parts) > 2 or not all(_IDENTIFIER.fullmatch(p) for p in parts):
        raise ConfigError(f"{name!r} is not a table or column name (letters, digits, _)")
    return ".".join(f'"{p}"' for p in parts)


def trigger_sql(channel: str, table: str, key_column: str) -> str:
    """The function and the trigger that NOTIFY ``channel`` with ``table.key_column``.

    Raises:
        ConfigError: ``table`` or ``key_column`` is not a plain identifier.
    """
    quoted_table = quote_identifier(table)
    column = quote_identifier(key_column).strip('"')
    if "." in key_column:
        raise ConfigError(f"{key_column!r} is a column of {table!r}: give its name alone")
    trigger = f'"meshcache_notify_{channel}"'
    return (
        f"{FUNCTION}\n\n"
        f"DROP TRIGGER IF EXISTS {trigger} ON {quoted_table};\n"
        f"CREATE TRIGGER {trigger}\n"
        f"  AFTER INSERT OR UPDATE OR DELETE ON {quoted_table}\n"
        f"  FOR EACH ROW EXECUTE FUNCTION meshcache_notify('{channel}', '{column}');\n"
    )


__all__ = ["FUNCTION", "quote_identifier", "trigger_sql"]

"""Use cases: one function each, owning its transaction, converting rows to and from the domain."""

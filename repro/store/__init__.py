from repro.store.store import RunState, Store, atomic_write_json

__all__ = ["RunState", "Store", "atomic_write_json"]

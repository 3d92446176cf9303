"""The store's error types, in their own module so the codec and the store share them without a cycle."""

from __future__ import annotations


class StoreError(ValueError):
    """A dataset or group that cannot be written or read as asked. The message names the dataset and group
    (when there is one) and says what is wrong; `dataset` and `group_id` carry the same names for callers."""

    def __init__(self, message: str, *, dataset: str | None = None, group_id: str | None = None) -> None:
        where = []
        if dataset is not None:
            where.append(f"dataset '{dataset}'")
        if group_id is not None:
            where.append(f"group '{group_id}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.dataset, self.group_id = dataset, group_id


class StoreNotFound(StoreError):
    """The dataset, group or preview asked for does not exist (a route answers 404 for it)."""

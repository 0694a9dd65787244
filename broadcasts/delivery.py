"""The delivery engine (issue 4). Placeholder until it lands: dispatch does nothing yet."""


def broadcast_dispatch(*, broadcast_id: str) -> None:
    raise NotImplementedError("delivery engine not built yet")

"""Domain logic of the hub: no HTTP here, only sessions and schemas."""

"""rclpy.executors essentials."""


class ExternalShutdownException(Exception):  # noqa: N818  (rclpy's name)
    """Raised by spin when the context is shut down from outside."""

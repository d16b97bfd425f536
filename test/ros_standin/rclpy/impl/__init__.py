"""Stand-in rclpy.impl: only what the lifecycle emulation needs."""

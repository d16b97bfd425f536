"""Stand-in lifecycle_msgs package."""

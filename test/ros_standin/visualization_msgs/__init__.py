"""Stand-in message package (generated from the rosbags typestore)."""

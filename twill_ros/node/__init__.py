"""The ROS 2 shell: the scheduler node and its helpers (rclpy lives here)."""

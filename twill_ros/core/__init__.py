"""Pure-Python decision core of Twill-ROS: no rclpy, no torch, no clock reads, no sleeps."""

"""Pure-Python decision core of Twill-ROS: no rclpy, no torch, no clock reads, no sleeps."""

from twill_ros.native import use_native

use_native(__name__, __path__)

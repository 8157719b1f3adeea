"""ROS 2 entry points of the gato_robot ament package (the logic lives in the gato_robot library)."""

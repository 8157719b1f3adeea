"""`ros2 run gato_robot stack_node`: the lifecycle node defined in gato_robot.ros.node."""

from gato_robot.ros.node import main

if __name__ == "__main__":
    main()

"""Deployment: the control loop (watchdog -> tokens -> runner -> action path -> SafetyLimits), the
safety filter and watchdog, and rosbag2 replay through the same loop."""

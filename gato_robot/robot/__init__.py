"""The arm: its description (URDF, datasheet joint limits, Pinocchio kinematics) and the action
path from the policy's Cartesian velocity command to joint position targets."""

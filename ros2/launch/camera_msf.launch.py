"""A V4L2 camera and msf-ros2 side by side: `ros2 launch ./camera_msf.launch.py model:=/path/slate.onnx`.

msf-ros2 is a plain executable (not an ament package), so it starts with ExecuteProcess; its settings
are the ROS parameters `--help` lists, passed with `--ros-args -p`.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    model = LaunchConfiguration("model")
    return LaunchDescription([
        DeclareLaunchArgument("model", description="msf-export's .onnx"),
        DeclareLaunchArgument("temporal", default_value="true"),
        # Any camera driver that publishes sensor_msgs/Image works; v4l2_camera publishes /image_raw.
        Node(package="v4l2_camera", executable="v4l2_camera_node", name="camera",
             parameters=[{"image_size": [640, 480]}]),
        ExecuteProcess(
            cmd=["msf-ros2", "--ros-args",
                 "-p", ["model:=", model],
                 "-p", ["temporal:=", LaunchConfiguration("temporal")],
                 "-p", "image_topics:=[/image_raw]",
                 "-p", "overlay:=true",
                 "-r", "__node:=msf"],
            output="screen",
            sigterm_timeout="5",
        ),
    ])

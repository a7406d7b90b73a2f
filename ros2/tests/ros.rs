//! msf-ros2 against a real ROS 2: rclpy on Fast DDS from the test venv (tests/python/requirements.txt
//! pins the pip ROS 2 Jazzy). A Python node (`ros_node_check.py`) publishes the frames of a generated
//! video as `sensor_msgs/Image` in four encodings and once as `CompressedImage`; the masks msf-ros2
//! publishes back must equal `msf-run`'s masks of the same frames pixel for pixel, with the stamps
//! and frame_id kept and no frame lost at 5 frames/s. Isolated: its own ROS_DOMAIN_ID, discovery on
//! localhost only, every process killed on drop and waited for with a deadline.
//!
//! Needs: the fixtures, ffmpeg, the venv with rclpy, and `msf-run` built next to this test
//! (`cargo test --workspace` builds it; else `cargo build -p msf-runtime`). Outside CI a missing
//! piece skips the test with a note; under `CI` it fails.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use msf_tests::{note, require_fixtures, require_python, run, run_command, skip_or_fail, temp_dir, FixtureModel};

const NODE: &str = env!("CARGO_BIN_EXE_msf-ros2");

/// A child process that is killed (and reaped) when the test ends, however it ends.
struct Guard(Child);

impl Guard {
    /// Waits up to `limit`; `None` when it was still running (it is then killed).
    fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(Some(s)) = self.0.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        None
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `msf-run` of the same build (target/<profile>/msf-run beside target/<profile>/deps/<this test>).
fn msf_run_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join(format!("msf-run{}", std::env::consts::EXE_SUFFIX));
    bin.is_file().then_some(bin)
}

/// A domain of this process (0..=101 are the ones whose ports are valid with many participants).
fn domain_id() -> u32 {
    20 + std::process::id() % 80
}

fn ros_env(cmd: &mut Command) -> &mut Command {
    cmd.env("ROS_DOMAIN_ID", domain_id().to_string())
        .env("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        .env_remove("ROS_STATIC_PEERS")
        .env_remove("ROS_LOCALHOST_ONLY")
        .env_remove("RMW_IMPLEMENTATION")
        .env_remove("FASTRTPS_DEFAULT_PROFILES_FILE")
}

#[test]
fn masks_of_a_ros2_camera_topic_equal_msf_runs_with_stamps_kept_and_nothing_lost() {
    const TEST: &str = "msf-ros2 against rclpy";
    let Some(py) = require_python(TEST) else { return };
    let probe = msf_tests::run_py_snippet(py, "import rclpy, sensor_msgs.msg, std_msgs.msg, PIL", Vec::<&str>::new());
    if !probe.status.success() {
        skip_or_fail(TEST, &format!("{} has no rclpy (run scripts/py-env): {}", py.display(), probe.stderr.lines().last().unwrap_or("")));
        return;
    }
    let Some(_) = require_fixtures(TEST) else { return };
    let Some(ffmpeg) = msf_tests::corpus::which("ffmpeg") else {
        skip_or_fail(TEST, "no ffmpeg on PATH");
        return;
    };
    let Some(msf_run) = msf_run_bin() else {
        skip_or_fail(TEST, "msf-run is not built beside this test (cargo build -p msf-runtime, or cargo test --workspace)");
        return;
    };

    let dir = temp_dir("ros2");
    let d = dir.path();
    let model = FixtureModel::slate(false);

    // A generated video (H.264 in mp4: what a camera recording is), its frames as PNG files: the
    // same pixels for msf-run and for the ROS 2 publisher.
    let video = d.join("camera.mp4");
    let frames = d.join("frames");
    std::fs::create_dir(&frames).unwrap();
    let quiet = ["-hide_banner", "-loglevel", "error"].map(OsString::from);
    let lavfi = ["-f", "lavfi", "-i", "testsrc2=size=128x96:rate=10", "-t", "2", "-pix_fmt", "yuv420p"].map(OsString::from);
    run(&ffmpeg, quiet.iter().chain(&lavfi).chain([&video.clone().into_os_string()])).assert_ok();
    let split = [OsString::from("-i"), video.into_os_string(), frames.join("%05d.png").into_os_string()];
    run(&ffmpeg, quiet.iter().chain(&split)).assert_ok();
    let out = d.join("msf-run");
    run(&msf_run, [Path::new("--onnx"), model.path(), &frames, Path::new("-o"), &out, Path::new("--quiet"), Path::new("--no-overlay")]).assert_ok();

    let log = d.join("node.log");
    let mut node = Command::new(NODE);
    ros_env(&mut node)
        .args(["--model".as_ref(), model.path().as_os_str()])
        .args(["--image", "/cam/image_raw", "--compressed", "/cam/image_raw/compressed", "--stats-period", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut node = Guard(node.spawn().expect("starting msf-ros2"));
    let node_log = || std::fs::read_to_string(&log).unwrap_or_default();

    let mut check = Command::new(py);
    ros_env(&mut check).arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ros_node_check.py")).args([
        "--frames".as_ref(),
        frames.as_os_str(),
        "--expected".as_ref(),
        out.join("masks").as_os_str(),
    ]);
    check.args([
        "--image",
        "/cam/image_raw",
        "--compressed",
        "/cam/image_raw/compressed",
        "--masks",
        "/msf/cam/image_raw",
        "--compressed-out",
        "/msf/cam/image_raw/compressed",
        "--rate",
        "5",
        "--timeout",
        "60",
    ]);
    // run_command waits; the script bounds itself (--timeout) and the node is killed on drop.
    let checked = run_command(check);
    assert!(checked.status.success(), "the ROS 2 check failed\n{}\n--- msf-ros2's log\n{}", checked.transcript(), node_log());
    note(format!("msf-ros2 test: {}", checked.stdout.trim()));

    // SIGINT: a clean stop that prints the counts.
    let pid = node.0.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let status = node.wait_for(Duration::from_secs(10));
    let text = node_log();
    assert!(status.is_some_and(|s| s.success()), "msf-ros2 did not stop cleanly on SIGINT ({status:?})\n{text}");
    let stopped = text.lines().find(|l| l.starts_with("msf-ros2: stopped: /cam/image_raw:")).unwrap_or_else(|| panic!("no final counts\n{text}"));
    assert!(stopped.contains("dropped 0, errors 0"), "{stopped}\n{text}");
}

#[test]
fn help_explains_topics_qos_and_parameters() {
    let o = run(Path::new(NODE), ["--help"]);
    o.assert_ok();
    for word in ["~/masks", "~/slots", "~/objects", "best effort", "ROS_DOMAIN_ID", "--ros-args", "EXIT CODES"] {
        assert!(o.stdout.contains(word), "--help lacks {word:?}\n{}", o.stdout);
    }
}

#[test]
fn a_model_that_is_not_there_is_one_line_and_exit_1() {
    let dir = temp_dir("ros2-bad");
    let o = run(Path::new(NODE), ["--model".as_ref(), dir.path().join("nope.onnx").as_os_str()]);
    o.assert_code(1);
    assert_eq!(o.stderr.trim().lines().count(), 1, "{}", o.transcript());
    assert!(o.stderr.contains("nope.onnx"), "{}", o.transcript());
}

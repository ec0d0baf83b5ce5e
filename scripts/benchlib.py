"""What the benchmark scripts share: CPU time of child processes, a published rendition
reassembled into one playable file, and its picture quality against the source (PSNR and
SSIM with Debian's ffmpeg; VMAF with the ffmpeg build `make bench-deps` installs, whose
libvmaf Debian's lacks)."""
import json
import os
import resource
import subprocess
import tempfile


def cpu():
    """CPU seconds (user + system) every finished child process has used so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def concat(playlist, dest):
    """A rendition reassembled: its init segment, then every media segment."""
    base = os.path.dirname(playlist)
    parts = []
    for line in open(playlist):
        line = line.strip()
        if line.startswith("#EXT-X-MAP:URI="):
            parts.insert(0, line.split('"')[1])
        elif line and not line.startswith("#"):
            parts.append(line)
    with open(dest, "wb") as f:
        for p in parts:
            with open(os.path.join(base, p), "rb") as g:
                f.write(g.read())
    return dest


def source_size(src):
    """(width, height) of the source's first video stream: the size quality is measured at
    (a rung scaled up to it is what a player shows full screen)."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=width,height", "-of", "csv=p=0", src],
                         capture_output=True, text=True, check=True).stdout
    w, h = out.strip().splitlines()[0].split(",")[:2]
    return int(w), int(h)


def quality(rendition, src, width, height, upscale=False):
    """(PSNR dB, SSIM) of every frame of `rendition` against `src`: at the rendition's
    size (the source scaled down to it), or with `upscale` at the source's size (the
    rendition scaled up to it, as a player shows it full screen)."""
    if upscale:
        a, b = "scale=%d:%d:flags=bicubic,format=yuv420p," % (width, height), "format=yuv420p,"
    else:
        a, b = "", "scale=%d:%d:flags=bicubic,format=yuv420p," % (width, height)
    graph = ("[0:v]%ssetpts=PTS-STARTPTS,split[a1][a2];[1:v]%ssetpts=PTS-STARTPTS,split[b1][b2];"
             "[a1][b1]psnr;[a2][b2]ssim" % (a, b))
    out = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-i", rendition, "-i", src,
                          "-lavfi", graph, "-f", "null", "-"],
                         capture_output=True, text=True, check=True).stderr
    psnr = [l for l in out.splitlines() if "PSNR" in l and "average:" in l][-1]
    ssim = [l for l in out.splitlines() if "SSIM" in l and "All:" in l][-1]
    return float(psnr.split("average:")[1].split()[0]), float(ssim.split("All:")[1].split()[0])


def vmaf_ffmpeg():
    """The ffmpeg with libvmaf: $VODPIPE_VMAF_FFMPEG, else the one PyPI's imageio-ffmpeg
    brings into .venv-bench (`make bench-deps`). A benchmark without it stops, loudly."""
    exe = os.environ.get("VODPIPE_VMAF_FFMPEG")
    if exe:
        return exe
    py = os.path.join(os.path.dirname(__file__), "..", ".venv-bench", "bin", "python")
    try:
        return subprocess.run([py, "-c", "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit("VMAF needs an ffmpeg with libvmaf: run `make bench-deps` (%s)" % e)


def vmaf(rendition, src, width, height, banding=False):
    """Mean VMAF (model vmaf_v0.6.1, the default) of every frame of `rendition` scaled up
    to `width`x`height` (as a player shows it full screen) against `src`. With `banding`,
    (VMAF, CAMBI) from the same pass: CAMBI is Netflix's banding index (0 none, higher
    worse), which VMAF does not see; a rung that keeps its VMAF by taking bits from flat
    areas shows up in it."""
    with tempfile.NamedTemporaryFile(suffix=".json") as log:
        extra = ":feature=name=cambi" if banding else ""
        graph = ("[0:v]scale=%d:%d:flags=bicubic,format=yuv420p,setpts=PTS-STARTPTS[d];"
                 "[1:v]format=yuv420p,setpts=PTS-STARTPTS[r];"
                 "[d][r]libvmaf=n_threads=2%s:log_fmt=json:log_path=%s" % (width, height, extra, log.name))
        subprocess.run([vmaf_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", rendition,
                        "-i", src, "-lavfi", graph, "-f", "null", "-"], check=True)
        pooled = json.load(open(log.name))["pooled_metrics"]
        if banding:
            return pooled["vmaf"]["mean"], pooled["cambi"]["mean"]
        return pooled["vmaf"]["mean"]

"""What the benchmark scripts share: CPU time of child processes, a published rendition
reassembled into one playable file, and its picture quality against the source."""
import os
import resource
import subprocess


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

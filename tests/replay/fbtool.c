/*
 * fbtool: draws into /dev/fb0 for the replay workloads (tests/replay/make-recording).
 * Built statically on the host and copied into the guest image as /usr/bin/fbtool.
 *
 *   fbtool blit FILE W H X Y
 *       writes the raw B,G,R,X picture FILE (W x H pixels, 4 bytes each, top row first)
 *       at (X, Y): one pwrite() per row, so the fbdev emulation reports exactly that
 *       rectangle as damage.
 *   fbtool video FILE SW SH W H X Y FRAMES DELAY_MS [HOLD]
 *       plays FRAMES frames of a W x H "video" at (X, Y), DELAY_MS apart: every pixel
 *       changes every frame (a window panning over the raw picture FILE, SW x SH, mixed
 *       with moving colour bands). Deterministic: the same frames every run. With HOLD,
 *       prints "fbtool: holding" on stdout, then writes the last frame HOLD times more,
 *       DELAY_MS apart (the screen keeps being redrawn at the video's rate, unchanged).
 *
 * Exit status 1 with a message on failure. Pixel format: the 32-bit fbdev of the qxl
 * driver (B,G,R,X in memory); the line length comes from FBIOGET_FSCREENINFO.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
    fprintf(stderr, "fbtool: %s: %s\n", what, strerror(errno));
    exit(1);
}

static unsigned number(const char *text) {
    char *end;
    unsigned long v = strtoul(text, &end, 10);
    if (*text == 0 || *end != 0 || v > 100000) {
        fprintf(stderr, "fbtool: bad number '%s'\n", text);
        exit(1);
    }
    return (unsigned)v;
}

static uint8_t *read_picture(const char *path, unsigned w, unsigned h) {
    size_t size = (size_t)w * h * 4;
    uint8_t *pixels = malloc(size);
    FILE *f = fopen(path, "rb");
    if (!pixels || !f) die(path);
    if (fread(pixels, 1, size, f) != size) {
        fprintf(stderr, "fbtool: %s is shorter than %ux%u pixels\n", path, w, h);
        exit(1);
    }
    fclose(f);
    return pixels;
}

struct screen {
    int fd;
    unsigned width, height, pitch;
};

static struct screen open_screen(void) {
    struct screen s;
    struct fb_var_screeninfo var;
    struct fb_fix_screeninfo fix;
    s.fd = open("/dev/fb0", O_WRONLY);
    if (s.fd < 0) die("/dev/fb0");
    if (ioctl(s.fd, FBIOGET_VSCREENINFO, &var) < 0) die("FBIOGET_VSCREENINFO");
    if (ioctl(s.fd, FBIOGET_FSCREENINFO, &fix) < 0) die("FBIOGET_FSCREENINFO");
    if (var.bits_per_pixel != 32) {
        fprintf(stderr, "fbtool: /dev/fb0 has %u bits per pixel, not 32\n", var.bits_per_pixel);
        exit(1);
    }
    s.width = var.xres;
    s.height = var.yres;
    s.pitch = fix.line_length;
    return s;
}

static void put_rect(struct screen *s, const uint8_t *pixels, unsigned w, unsigned h, unsigned x,
                     unsigned y) {
    if (x + w > s->width || y + h > s->height) {
        fprintf(stderr, "fbtool: %ux%u at (%u,%u) does not fit the %ux%u screen\n", w, h, x, y,
                s->width, s->height);
        exit(1);
    }
    /* Linux 6.1's fbdev emulation turns a write that ends exactly at the end of a line into an
     * empty damage rectangle when it covers a single line: write full-width rectangles in one
     * go (several lines: full-width damage), and never end a one-line write at the edge. */
    if (x == 0 && (size_t)w * 4 == s->pitch) {
        size_t size = (size_t)w * h * 4;
        if (pwrite(s->fd, pixels, size, (off_t)y * s->pitch) != (ssize_t)size) die("pwrite /dev/fb0");
        return;
    }
    if (x + w == s->width) {
        fprintf(stderr, "fbtool: a rectangle that is not full-width must not touch the right edge\n");
        exit(1);
    }
    for (unsigned row = 0; row < h; row++) {
        off_t at = (off_t)(y + row) * s->pitch + (off_t)x * 4;
        if (pwrite(s->fd, pixels + (size_t)row * w * 4, (size_t)w * 4, at) != (ssize_t)(w * 4))
            die("pwrite /dev/fb0");
    }
}

static void sleep_ms(unsigned ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, 0);
}

int main(int argc, char **argv) {
    if (argc == 7 && strcmp(argv[1], "blit") == 0) {
        unsigned w = number(argv[3]), h = number(argv[4]);
        uint8_t *pixels = read_picture(argv[2], w, h);
        struct screen s = open_screen();
        put_rect(&s, pixels, w, h, number(argv[5]), number(argv[6]));
        return 0;
    }
    if ((argc == 11 || argc == 12) && strcmp(argv[1], "video") == 0) {
        unsigned sw = number(argv[3]), sh = number(argv[4]);
        unsigned w = number(argv[5]), h = number(argv[6]);
        unsigned x = number(argv[7]), y = number(argv[8]);
        unsigned frames = number(argv[9]), delay = number(argv[10]);
        unsigned hold = argc == 12 ? number(argv[11]) : 0;
        if (frames == 0) {
            fprintf(stderr, "fbtool: a video needs at least one frame\n");
            return 1;
        }
        uint8_t *source = read_picture(argv[2], sw, sh);
        uint8_t *frame = malloc((size_t)w * h * 4);
        if (!frame) die("malloc");
        struct screen s = open_screen();
        for (unsigned f = 0; f < frames; f++) {
            for (unsigned row = 0; row < h; row++) {
                const uint8_t *src = source + (size_t)((row + 3 * f) % sh) * sw * 4;
                uint8_t *dst = frame + (size_t)row * w * 4;
                for (unsigned col = 0; col < w; col++) {
                    const uint8_t *p = src + (size_t)((col + 7 * f) % sw) * 4;
                    unsigned band = (col + row + 9 * f) & 0xff;
                    dst[col * 4 + 0] = (uint8_t)((p[0] + band) >> 1);
                    dst[col * 4 + 1] = (uint8_t)((p[1] + (row * 2 + f * 5)) & 0xff);
                    dst[col * 4 + 2] = (uint8_t)((p[2] ^ (col + f * 11)) & 0xff);
                    dst[col * 4 + 3] = 0;
                }
            }
            put_rect(&s, frame, w, h, x, y);
            sleep_ms(delay);
        }
        if (hold > 0) {
            printf("fbtool: holding\n");
            fflush(stdout);
        }
        for (unsigned i = 0; i < hold; i++) {
            put_rect(&s, frame, w, h, x, y);
            sleep_ms(delay);
        }
        return 0;
    }
    fprintf(stderr,
            "usage: fbtool blit FILE W H X Y\n"
            "       fbtool video FILE SW SH W H X Y FRAMES DELAY_MS [HOLD]\n");
    return 1;
}

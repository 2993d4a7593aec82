/*
 * qxl-modeset: a tiny KMS client for the test guest (no libdrm needed).
 *
 *   qxl-modeset WIDTH HEIGHT SECONDS [RGB [FRAMES [cursor]]]
 *
 * Opens /dev/dri/card0, finds the first connected connector and a mode of
 * WIDTH x HEIGHT in its list, creates a dumb buffer filled with RGB (hex,
 * default 204080; or "pattern": pixel (x, y) is 0xRRGGBB with
 * RR = (7x + 3y) & ff, GG = (x ^ 5y) & ff, BB = (xy >> 3) & ff, a picture
 * tests can check anywhere), shows it on the first CRTC, prints "MODESET-OK WxH",
 * keeps it for SECONDS and exits (the kernel's fbdev console then takes the
 * screen back at its own mode). Exit status 1 with a message on failure.
 *
 * With FRAMES, it first redraws the whole buffer FRAMES times (a new colour
 * each time, then a DIRTYFB ioctl for the whole screen, as a compositor
 * does) and prints "FRAMES n MS t" (the benchmark's redraw loop).
 *
 *   qxl-modeset heads WxH[,WxH...] SECONDS
 *
 * Several outputs, as a desktop with several monitors: CRTC i shows a
 * buffer of its own on connector i (which must be connected and offer
 * WxH); CRTCs past the list are turned off. Linux's qxl driver puts the
 * dumb buffers of its CRTCs side by side in one primary surface, so buffer
 * i holds the pattern of a screen where the heads stand side by side: its
 * pixel (x, y) is the pattern's (X + x, y), X the widths of the heads
 * before it. Prints "HEADS-OK n".
 *
 * With "cursor", it also shows a 64x64 cursor (opaque blue square, hot spot
 * 0,0) at (100, 50), prints "CURSOR-SET", and after 2 s moves it to (300, 200)
 * and prints "CURSOR-MOVED".
 *
 * The structures below are the DRM mode-setting ioctl ABI
 * (include/uapi/drm/drm_mode.h), restated.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

struct mode_info {
    uint32_t clock;
    uint16_t hdisplay, hsync_start, hsync_end, htotal, hskew;
    uint16_t vdisplay, vsync_start, vsync_end, vtotal, vscan;
    uint32_t vrefresh, flags, type;
    char name[32];
};

struct card_res {
    uint64_t fb_id_ptr, crtc_id_ptr, connector_id_ptr, encoder_id_ptr;
    uint32_t count_fbs, count_crtcs, count_connectors, count_encoders;
    uint32_t min_width, max_width, min_height, max_height;
};

struct get_connector {
    uint64_t encoders_ptr, modes_ptr, props_ptr, prop_values_ptr;
    uint32_t count_modes, count_props, count_encoders;
    uint32_t encoder_id, connector_id, connector_type, connector_type_id;
    uint32_t connection, mm_width, mm_height, subpixel, pad;
};

struct create_dumb {
    uint32_t height, width, bpp, flags, handle, pitch;
    uint64_t size;
};

struct map_dumb {
    uint32_t handle, pad;
    uint64_t offset;
};

struct fb_cmd {
    uint32_t fb_id, width, height, pitch, bpp, depth, handle;
};

struct clip_rect {
    uint16_t x1, y1, x2, y2;
};

struct fb_dirty {
    uint32_t fb_id, flags, color, num_clips;
    uint64_t clips_ptr;
};

struct cursor {
    uint32_t flags, crtc_id;
    int32_t x, y;
    uint32_t width, height, handle;
};
#define CURSOR_BO 1
#define CURSOR_MOVE 2

struct set_crtc {
    uint64_t set_connectors_ptr;
    uint32_t count_connectors, crtc_id, fb_id, x, y, gamma_size, mode_valid;
    struct mode_info mode;
};

#define IOCTL_GETRESOURCES _IOWR('d', 0xA0, struct card_res)
#define IOCTL_SETCRTC _IOWR('d', 0xA2, struct set_crtc)
#define IOCTL_CURSOR _IOWR('d', 0xA3, struct cursor)
#define IOCTL_GETCONNECTOR _IOWR('d', 0xA7, struct get_connector)
#define IOCTL_ADDFB _IOWR('d', 0xAE, struct fb_cmd)
#define IOCTL_DIRTYFB _IOWR('d', 0xB1, struct fb_dirty)
#define IOCTL_CREATE_DUMB _IOWR('d', 0xB2, struct create_dumb)
#define IOCTL_MAP_DUMB _IOWR('d', 0xB3, struct map_dumb)

static void die(const char *what) {
    perror(what);
    exit(1);
}

static uint32_t pattern_pixel(unsigned x, unsigned y) {
    return ((7 * x + 3 * y) & 0xff) << 16 | ((x ^ (5 * y)) & 0xff) << 8 | ((x * y >> 3) & 0xff);
}

/* The mode of WxH that connector `id` offers, if it is connected. */
static int connector_mode(int fd, uint32_t id, unsigned w, unsigned h, struct mode_info *out) {
    static struct mode_info modes[256];
    struct get_connector c = {0};
    c.connector_id = id;
    if (ioctl(fd, IOCTL_GETCONNECTOR, &c))
        die("GETCONNECTOR");
    if (c.connection != 1 || c.count_modes == 0)
        return 0;
    struct get_connector c2 = {0};
    c2.connector_id = id;
    c2.modes_ptr = (uintptr_t)modes;
    c2.count_modes = c.count_modes > 256 ? 256 : c.count_modes;
    if (ioctl(fd, IOCTL_GETCONNECTOR, &c2))
        die("GETCONNECTOR");
    if (c2.count_modes > 256 || c2.count_modes > c.count_modes)
        return 0; /* the list changed between the calls: nothing was copied */
    for (unsigned m = 0; m < c2.count_modes; m++) {
        if (modes[m].hdisplay == w && modes[m].vdisplay == h) {
            *out = modes[m];
            return 1;
        }
    }
    return 0;
}

/* A mapped dumb buffer with its framebuffer. */
struct buffer {
    uint8_t *pixels;
    uint32_t pitch, fb_id;
};

/* A new w x h dumb buffer, mapped; its handle and pitch too. */
static uint8_t *new_dumb(int fd, unsigned w, unsigned h, uint32_t *handle, uint32_t *pitch) {
    struct create_dumb dumb = {.height = h, .width = w, .bpp = 32};
    if (ioctl(fd, IOCTL_CREATE_DUMB, &dumb))
        die("CREATE_DUMB");
    struct map_dumb map = {.handle = dumb.handle};
    if (ioctl(fd, IOCTL_MAP_DUMB, &map))
        die("MAP_DUMB");
    uint8_t *pixels = mmap(0, dumb.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, map.offset);
    if (pixels == MAP_FAILED)
        die("mmap");
    *handle = dumb.handle;
    *pitch = dumb.pitch;
    return pixels;
}

/* A dumb buffer of w x h filled with the pattern from (x0, 0), or with rgb. */
static struct buffer new_buffer(int fd, unsigned w, unsigned h, int pattern, unsigned x0,
                                uint32_t rgb) {
    uint32_t handle, pitch;
    uint8_t *pixels = new_dumb(fd, w, h, &handle, &pitch);
    for (unsigned y = 0; y < h; y++) {
        uint32_t *row = (uint32_t *)(pixels + (uint64_t)y * pitch);
        for (unsigned x = 0; x < w; x++)
            row[x] = pattern ? pattern_pixel(x0 + x, y) : rgb;
    }
    struct fb_cmd fb = {
        .width = w, .height = h, .pitch = pitch, .bpp = 32, .depth = 24, .handle = handle};
    if (ioctl(fd, IOCTL_ADDFB, &fb))
        die("ADDFB");
    return (struct buffer){pixels, pitch, fb.fb_id};
}

/* `qxl-modeset heads LAYOUT SECONDS`. */
static int set_heads(int fd, const char *layout, unsigned seconds, uint32_t *crtcs,
                     uint32_t *connectors, unsigned ncrtcs, unsigned nconnectors) {
    unsigned w[16], h[16], n = 0;
    for (const char *p = layout; *p && n < 16; n++) {
        if (sscanf(p, "%ux%u", &w[n], &h[n]) != 2 || w[n] == 0 || h[n] == 0 || w[n] > 8192 ||
            h[n] > 8192) {
            fprintf(stderr, "bad head '%s' (want WxH)\n", p);
            return 2;
        }
        p = strchr(p, ',') ? strchr(p, ',') + 1 : p + strlen(p);
    }
    if (n == 0 || n > ncrtcs || n > nconnectors) {
        fprintf(stderr, "%u heads, the card has %u CRTCs and %u connectors\n", n, ncrtcs,
                nconnectors);
        return 1;
    }
    struct mode_info modes[16];
    for (unsigned i = 0; i < n; i++) {
        if (!connector_mode(fd, connectors[i], w[i], h[i], &modes[i])) {
            fprintf(stderr, "connector %u is not connected or does not offer %ux%u\n", i, w[i],
                    h[i]);
            return 1;
        }
    }
    for (unsigned i = ncrtcs; i-- > n;) { /* last first: the guest's count shrinks */
        struct set_crtc off = {.crtc_id = crtcs[i]};
        if (ioctl(fd, IOCTL_SETCRTC, &off))
            die("SETCRTC off");
    }
    /* Twice: each output that grows the primary surface makes the driver
       start a new, blank one, so once all are set each is set again, which
       redraws it at its place (as a desktop redraws; DIRTYFB would not do:
       the driver draws a dumb buffer's damage at the first head's place). */
    uint32_t fbs[16];
    for (unsigned pass = 0; pass < 2; pass++) {
        for (unsigned i = 0, x0 = 0; i < n; x0 += w[i], i++) {
            struct set_crtc set = {0};
            set.set_connectors_ptr = (uintptr_t)&connectors[i];
            set.count_connectors = 1;
            set.crtc_id = crtcs[i];
            set.fb_id = pass ? fbs[i] : (fbs[i] = new_buffer(fd, w[i], h[i], 1, x0, 0).fb_id);
            set.mode_valid = 1;
            set.mode = modes[i];
            if (ioctl(fd, IOCTL_SETCRTC, &set))
                die("SETCRTC");
        }
    }
    printf("HEADS-OK %u\n", n);
    fflush(stdout);
    sleep(seconds);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s WIDTH HEIGHT SECONDS [RGB [FRAMES [cursor]]]\n"
                        "       %s heads WxH[,WxH...] SECONDS\n", argv[0], argv[0]);
        return 2;
    }
    unsigned w = strtoul(argv[1], 0, 10), h = strtoul(argv[2], 0, 10);
    unsigned seconds = strtoul(argv[3], 0, 10);
    int pattern = argc > 4 && strcmp(argv[4], "pattern") == 0;
    uint32_t rgb = argc > 4 && !pattern ? strtoul(argv[4], 0, 16) : 0x204080;
    unsigned frames = argc > 5 ? strtoul(argv[5], 0, 10) : 0;
    int want_cursor = argc > 6 && strcmp(argv[6], "cursor") == 0;

    int fd = open("/dev/dri/card0", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        die("/dev/dri/card0");

    uint32_t crtcs[16], connectors[16];
    struct card_res res = {0};
    if (ioctl(fd, IOCTL_GETRESOURCES, &res))
        die("GETRESOURCES");
    if (res.count_crtcs == 0 || res.count_connectors == 0 || res.count_crtcs > 16 ||
        res.count_connectors > 16) {
        fprintf(stderr, "unexpected resources: %u crtcs, %u connectors\n", res.count_crtcs,
                res.count_connectors);
        return 1;
    }
    struct card_res res2 = {0};
    res2.crtc_id_ptr = (uintptr_t)crtcs;
    res2.connector_id_ptr = (uintptr_t)connectors;
    res2.count_crtcs = res.count_crtcs;
    res2.count_connectors = res.count_connectors;
    if (ioctl(fd, IOCTL_GETRESOURCES, &res2))
        die("GETRESOURCES");

    if (strcmp(argv[1], "heads") == 0)
        return set_heads(fd, argv[2], strtoul(argv[3], 0, 10), crtcs, connectors,
                         res2.count_crtcs, res2.count_connectors);

    struct mode_info chosen;
    uint32_t connector = 0;
    int found = 0;
    for (unsigned i = 0; i < res2.count_connectors && !found; i++) {
        found = connector_mode(fd, connectors[i], w, h, &chosen);
        connector = connectors[i];
    }
    if (!found) {
        fprintf(stderr, "no connected connector offers %ux%u\n", w, h);
        return 1;
    }
    struct buffer buffer = new_buffer(fd, w, h, pattern, 0, rgb);
    struct set_crtc set = {0};
    set.set_connectors_ptr = (uintptr_t)&connector;
    set.count_connectors = 1;
    set.crtc_id = crtcs[0];
    set.fb_id = buffer.fb_id;
    set.mode_valid = 1;
    set.mode = chosen;
    if (ioctl(fd, IOCTL_SETCRTC, &set))
        die("SETCRTC");
    printf("MODESET-OK %ux%u\n", w, h);
    fflush(stdout);
    if (frames) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        struct clip_rect all = {0, 0, w, h};
        for (unsigned f = 0; f < frames; f++) {
            uint32_t color = (f * 0x010203u) & 0xffffff;
            for (unsigned y = 0; y < h; y++) {
                uint32_t *row = (uint32_t *)(buffer.pixels + (uint64_t)y * buffer.pitch);
                for (unsigned x = 0; x < w; x++)
                    row[x] = color ^ x;
            }
            struct fb_dirty dirty = {.fb_id = buffer.fb_id, .num_clips = 1, .clips_ptr = (uintptr_t)&all};
            if (ioctl(fd, IOCTL_DIRTYFB, &dirty))
                die("DIRTYFB");
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        printf("FRAMES %u MS %ld\n", frames, ms);
        fflush(stdout);
    }
    if (want_cursor) {
        uint32_t handle, pitch;
        uint8_t *cp = new_dumb(fd, 64, 64, &handle, &pitch);
        for (unsigned y = 0; y < 64; y++) {
            uint32_t *row = (uint32_t *)(cp + (uint64_t)y * pitch);
            for (unsigned x = 0; x < 64; x++)
                row[x] = (x >= 8 && x < 56 && y >= 8 && y < 56) ? 0xff0000ffu : 0;
        }
        struct cursor c = {.flags = CURSOR_BO | CURSOR_MOVE, .crtc_id = crtcs[0],
                           .x = 100, .y = 50, .width = 64, .height = 64, .handle = handle};
        if (ioctl(fd, IOCTL_CURSOR, &c))
            die("CURSOR");
        printf("CURSOR-SET\n");
        fflush(stdout);
        sleep(2);
        struct cursor m = {.flags = CURSOR_MOVE, .crtc_id = crtcs[0], .x = 300, .y = 200};
        if (ioctl(fd, IOCTL_CURSOR, &m))
            die("CURSOR move");
        printf("CURSOR-MOVED\n");
        fflush(stdout);
    }
    sleep(seconds);
    return 0;
}

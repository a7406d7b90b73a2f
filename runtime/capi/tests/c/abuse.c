/*
 * abuse.c: misuse of the msf-runtime C API must give error codes and messages, never a crash.
 *
 *   cc -std=c11 -Wall -Wextra -Werror abuse.c $(pkg-config --cflags --libs msf_runtime) -o abuse
 *   ./abuse MODEL.onnx NOT_A_MODEL_FILE
 *
 * MODEL.onnx is an exported MSF model without the slots_init input (`msf-export --no-slots-in`); the second
 * argument any existing file that is not ONNX. Prints one line per check; the last line is
 * "abuse: all N checks ok" and the exit status 0 when every check passed, else the number failed.
 * Built and run by tests/native.rs.
 */
#include <msf_runtime.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int checks = 0;
static int failures = 0;

/* `status` must be `want`, and the last error must contain `needle` ("" = must be empty on OK). */
static void expect(const char *what, MsfStatus status, MsfStatus want, const char *needle) {
    const char *msg = msf_last_error();
    int ok = status == want && msg != NULL &&
             (want == MSF_STATUS_OK ? msg[0] == '\0' : strstr(msg, needle) != NULL);
    checks++;
    if (!ok) failures++;
    printf("%s %s: %s (%d)%s%s\n", ok ? "ok  " : "FAIL", what, msf_status_string((int)status), (int)status,
           msg && msg[0] ? " | " : "", msg ? msg : "(NULL message)");
    if (!ok) printf("     expected %s (%d) with a message containing \"%s\"\n", msf_status_string((int)want), (int)want,
                    needle);
}

static void expect_true(const char *what, int cond) {
    checks++;
    if (!cond) failures++;
    printf("%s %s\n", cond ? "ok  " : "FAIL", what);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.onnx NOT_A_MODEL_FILE\n", argv[0]);
        return 100;
    }
    const char *model = argv[1];
    const char *not_model = argv[2];

    printf("msf_runtime %s\n", msf_version());
    expect_true("msf_version is not empty", msf_version() != NULL && msf_version()[0] != '\0');
    expect_true("msf_last_error is empty before any call", msf_last_error()[0] == '\0');
    expect_true("msf_status_string of an unknown value",
                strcmp(msf_status_string(12345), "unknown status") == 0 &&
                    strcmp(msf_status_string(-1), "unknown status") == 0);

    /* ---- loading ---- */
    MsfDecomposer *dec = (MsfDecomposer *)0x1; /* must be reset to NULL on failure */
    expect("create: NULL path", msf_decomposer_create(NULL, NULL, &dec), MSF_STATUS_NULL_ARGUMENT, "`onnx_path` is NULL");
    expect_true("create: *out reset to NULL on failure", dec == NULL);
    expect("create: NULL out", msf_decomposer_create(model, NULL, NULL), MSF_STATUS_NULL_ARGUMENT, "`out` is NULL");
    expect("create: empty path", msf_decomposer_create("", NULL, &dec), MSF_STATUS_INVALID_ARGUMENT, "empty string");
    expect("create: nonexistent model", msf_decomposer_create("/nonexistent/dir/model.onnx", NULL, &dec),
           MSF_STATUS_IO, "model file not found");
    expect_true("create: no handle for a missing file", dec == NULL);
    expect("create: a file that is not ONNX", msf_decomposer_create(not_model, NULL, &dec), MSF_STATUS_MODEL,
           not_model);
    expect("create: a directory", msf_decomposer_create("/", NULL, &dec), MSF_STATUS_IO, "");

    MsfOptions opts;
    memset(&opts, 0, sizeof opts);
    expect("create: options without struct_size", msf_decomposer_create(model, &opts, &dec),
           MSF_STATUS_INVALID_ARGUMENT, "msf_options_default");
    opts = msf_options_default();
    opts.struct_size = 4;
    expect("create: options too small", msf_decomposer_create(model, &opts, &dec), MSF_STATUS_INVALID_ARGUMENT,
           "struct_size is 4");
    opts = msf_options_default();
    opts.backend = 77;
    expect("create: unknown backend", msf_decomposer_create(model, &opts, &dec), MSF_STATUS_INVALID_ARGUMENT,
           "unknown backend 77");
    opts = msf_options_default();
    opts.provider = 9;
    expect("create: unknown provider", msf_decomposer_create(model, &opts, &dec), MSF_STATUS_INVALID_ARGUMENT,
           "unknown provider 9");
    opts = msf_options_default();
    opts.fit = 9;
    expect("create: unknown fit", msf_decomposer_create(model, &opts, &dec), MSF_STATUS_INVALID_ARGUMENT,
           "unknown fit 9");
    expect_true("create: no handle for an unknown fit", dec == NULL);
    opts = msf_options_default();
    opts.struct_size = (uint32_t)offsetof(MsfOptions, fit) + 2;
    expect("create: struct_size between versions", msf_decomposer_create(model, &opts, &dec),
           MSF_STATUS_INVALID_ARGUMENT, "struct_size is 26");
    expect_true("options_default: the library's default fit is stretch", msf_options_default().fit == MSF_FIT_STRETCH);

    /* The checks below are about the centre crop: ask for it. */
    opts = msf_options_default();
    opts.threads = 1;
    opts.fit = MSF_FIT_CROP;
    expect("create: valid model", msf_decomposer_create(model, &opts, &dec), MSF_STATUS_OK, "");
    if (dec == NULL) {
        printf("abuse: cannot go on without a model (%d checks failed)\n", failures);
        return failures ? failures : 1;
    }
    MsfModelInfo info;
    expect("info: NULL out", msf_decomposer_info(dec, NULL), MSF_STATUS_NULL_ARGUMENT, "`out` is NULL");
    expect("info", msf_decomposer_info(dec, &info), MSF_STATUS_OK, "");
    expect_true("info: plausible shapes", info.num_slots > 0 && info.slot_dim > 0 && info.mask_size > 0 &&
                                              info.slots_input == 0);

    /* ---- decomposing: bad frames ---- */
    enum { W = 64, H = 48, C = 3 };
    static uint8_t img[H][W * C + 16]; /* rows padded to a stride of W*3 + 16 bytes */
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W * C; x++) img[y][x] = (uint8_t)((x * 7 + y * 13) ^ (x * y));
    const size_t stride = sizeof img[0];
    MsfResult *res = (MsfResult *)0x1;

    expect("decompose: NULL decomposer", msf_decompose(NULL, &img[0][0], W, H, stride, MSF_PIXEL_FORMAT_RGB8, &res),
           MSF_STATUS_NULL_ARGUMENT, "`dec` is NULL");
    expect_true("decompose: *out reset to NULL on failure", res == NULL);
    expect("decompose: NULL data", msf_decompose(dec, NULL, W, H, stride, MSF_PIXEL_FORMAT_RGB8, &res),
           MSF_STATUS_NULL_ARGUMENT, "`data` is NULL");
    expect("decompose: NULL out", msf_decompose(dec, &img[0][0], W, H, stride, MSF_PIXEL_FORMAT_RGB8, NULL),
           MSF_STATUS_NULL_ARGUMENT, "`out` is NULL");
    expect("decompose: zero width", msf_decompose(dec, &img[0][0], 0, H, stride, MSF_PIXEL_FORMAT_RGB8, &res),
           MSF_STATUS_INVALID_ARGUMENT, "0x48");
    expect("decompose: zero height", msf_decompose(dec, &img[0][0], W, 0, stride, MSF_PIXEL_FORMAT_RGB8, &res),
           MSF_STATUS_INVALID_ARGUMENT, "64x0");
    expect("decompose: stride smaller than a row",
           msf_decompose(dec, &img[0][0], W, H, W * C - 1, MSF_PIXEL_FORMAT_RGB8, &res), MSF_STATUS_INVALID_ARGUMENT,
           "stride 191 bytes is less than one row");
    expect("decompose: stride right for RGB, too small for RGBA",
           msf_decompose(dec, &img[0][0], W, H, W * C, MSF_PIXEL_FORMAT_RGBA8, &res), MSF_STATUS_INVALID_ARGUMENT,
           "(256 bytes)");
    expect("decompose: size that overflows", msf_decompose(dec, &img[0][0], W, 0xffffffffu, SIZE_MAX / 2,
                                                           MSF_PIXEL_FORMAT_RGB8, &res),
           MSF_STATUS_INVALID_ARGUMENT, "do not fit in memory");
    expect("decompose: unknown pixel format", msf_decompose(dec, &img[0][0], W, H, stride, 42, &res),
           MSF_STATUS_INVALID_ARGUMENT, "unknown pixel format 42");
    size_t need = 0;
    expect("required_size", msf_image_required_size(W, H, stride, MSF_PIXEL_FORMAT_RGB8, &need), MSF_STATUS_OK, "");
    expect_true("required_size: last row unpadded", need == (H - 1) * stride + W * C);
    expect("required_size: NULL out", msf_image_required_size(W, H, stride, MSF_PIXEL_FORMAT_RGB8, NULL),
           MSF_STATUS_NULL_ARGUMENT, "`out`");

    /* ---- decomposing: a good frame, then the accessors ---- */
    expect("decompose: strided RGB", msf_decompose(dec, &img[0][0], W, H, stride, MSF_PIXEL_FORMAT_RGB8, &res),
           MSF_STATUS_OK, "");
    if (res == NULL) {
        printf("abuse: cannot go on without a result (%d checks failed)\n", failures);
        return failures ? failures : 1;
    }
    size_t k = 0, d = 0, count = 0;
    const float *slots = NULL;
    const uint8_t *mask = NULL;
    uint32_t mw = 0, mh = 0;
    MsfBBox box;
    MsfCrop crop;
    uint64_t area = 0, total = 0;
    expect("num_slots", msf_result_num_slots(res, &k), MSF_STATUS_OK, "");
    expect("slot_dim", msf_result_slot_dim(res, &d), MSF_STATUS_OK, "");
    expect("slots", msf_result_slots(res, &slots, &count), MSF_STATUS_OK, "");
    expect_true("slots: K x D values", k == info.num_slots && d == info.slot_dim && count == k * d && slots != NULL);
    expect("slots: NULL count", msf_result_slots(res, &slots, NULL), MSF_STATUS_NULL_ARGUMENT, "`count` is NULL");
    expect("mask: NULL height", msf_result_mask(res, &mask, &mw, NULL), MSF_STATUS_NULL_ARGUMENT, "`height` is NULL");
    expect("mask", msf_result_mask(res, &mask, &mw, &mh), MSF_STATUS_OK, "");
    expect_true("mask: model resolution", mw == info.mask_size && mh == info.mask_size);
    expect("mask_frame", msf_result_mask_frame(res, &mask, &mw, &mh), MSF_STATUS_OK, "");
    expect_true("mask_frame: frame resolution", mw == W && mh == H);
    expect("crop", msf_result_crop(res, &crop), MSF_STATUS_OK, "");
    expect_true("crop: centre square", crop.size == H && crop.left == (W - H) / 2 && crop.top == 0);
    int void_ok = 1;
    for (uint32_t y = 0; y < mh; y++)
        for (uint32_t x = 0; x < mw; x++) {
            int inside = x >= crop.left && x < crop.left + crop.size;
            uint8_t v = mask[y * mw + x];
            if (inside ? v >= k : v != MSF_MASK_VOID) void_ok = 0;
        }
    expect_true("mask_frame: slot ids inside the crop, MSF_MASK_VOID outside", void_ok);
    for (uint32_t s = 0; s < k; s++) {
        msf_result_area_frame(res, (uint32_t)s, &area);
        total += area;
    }
    expect_true("area_frame: slots cover the crop", total == (uint64_t)crop.size * crop.size);
    expect("area: slot out of range", msf_result_area(res, (uint32_t)k, &area), MSF_STATUS_INVALID_ARGUMENT,
           "out of range");
    expect("bbox: slot out of range", msf_result_bbox(res, 0xffffffffu, &box), MSF_STATUS_INVALID_ARGUMENT,
           "out of range");
    expect("bbox: NULL out", msf_result_bbox(res, 0, NULL), MSF_STATUS_NULL_ARGUMENT, "`out` is NULL");
    expect("bbox_frame", msf_result_bbox_frame(res, 0, &box), MSF_STATUS_OK, "");
    MsfView view;
    memset(&view, 0, sizeof view);
    expect("view: struct_size not set", msf_result_view(res, &view), MSF_STATUS_INVALID_ARGUMENT, "sizeof(MsfView)");
    expect("view: NULL out", msf_result_view(res, NULL), MSF_STATUS_NULL_ARGUMENT, "`out` is NULL");
    view.struct_size = sizeof view;
    expect("view of a crop result", msf_result_view(res, &view), MSF_STATUS_OK, "");
    expect_true("view: the crop's rectangles",
                view.struct_size == sizeof view && view.fit == MSF_FIT_CROP && view.frame.x == crop.left &&
                    view.frame.y == 0 && view.frame.width == crop.size && view.frame.height == crop.size &&
                    view.input.x == 0 && view.input.width == view.input_size && view.mask_size == info.mask_size &&
                    view.tiles == 1 && !view.tiled && !view.covers_frame);

    /* ---- fits: a program built against the version-2 header, the default (stretch), tiles ---- */
    {
        MsfOptions old = msf_options_default();
        old.threads = 1;
        old.fit = 77; /* past the old struct: must not be read */
        old.struct_size = (uint32_t)offsetof(MsfOptions, fit);
        MsfDecomposer *d2 = NULL;
        MsfResult *r2 = NULL;
        expect("create: MsfOptions of the version-2 header (24 bytes)", msf_decomposer_create(model, &old, &d2),
               MSF_STATUS_OK, "");
        if (d2) {
            expect("decompose (version-2 options)",
                   msf_decompose(d2, &img[0][0], W, H, stride, MSF_PIXEL_FORMAT_RGB8, &r2), MSF_STATUS_OK, "");
            view.struct_size = sizeof view;
            expect("view (version-2 options)", msf_result_view(r2, &view), MSF_STATUS_OK, "");
            expect_true("version-2 options keep the centre crop", view.fit == MSF_FIT_CROP && !view.covers_frame);
            expect("crop (version-2 options)", msf_result_crop(r2, &crop), MSF_STATUS_OK, "");
            msf_result_destroy(r2);
            msf_decomposer_destroy(d2);
        }

        MsfOptions stretch = msf_options_default();
        stretch.threads = 1;
        expect("create: default options (stretch)", msf_decomposer_create(model, &stretch, &d2), MSF_STATUS_OK, "");
        if (d2) {
            expect("decompose (stretch)", msf_decompose(d2, &img[0][0], W, H, stride, MSF_PIXEL_FORMAT_RGB8, &r2),
                   MSF_STATUS_OK, "");
            expect("crop of a stretch result", msf_result_crop(r2, &crop), MSF_STATUS_INVALID_ARGUMENT,
                   "use msf_result_view");
            view.struct_size = sizeof view;
            expect("view (stretch)", msf_result_view(r2, &view), MSF_STATUS_OK, "");
            expect_true("view: stretch covers the whole frame",
                        view.fit == MSF_FIT_STRETCH && view.frame_width == W && view.frame_height == H &&
                            view.frame.x == 0 && view.frame.y == 0 && view.frame.width == W &&
                            view.frame.height == H && view.input.width == view.input_size &&
                            view.input.height == view.input_size && view.covers_frame && view.tiles == 1);
            expect("mask_frame (stretch)", msf_result_mask_frame(r2, &mask, &mw, &mh), MSF_STATUS_OK, "");
            size_t n = 0;
            msf_result_num_slots(r2, &n);
            int all = 1;
            for (uint32_t i = 0; i < mw * mh; i++)
                if (mask[i] >= n) all = 0;
            expect_true("mask_frame (stretch): an object at every pixel, no MSF_MASK_VOID", all);
            msf_result_destroy(r2);
            msf_decomposer_destroy(d2);
        }

        MsfOptions tiles = msf_options_default();
        tiles.threads = 1;
        tiles.fit = MSF_FIT_TILES;
        expect("create: tiles", msf_decomposer_create(model, &tiles, &d2), MSF_STATUS_OK, "");
        if (d2) {
            expect("decompose (tiles)", msf_decompose(d2, &img[0][0], W, H, stride, MSF_PIXEL_FORMAT_RGB8, &r2),
                   MSF_STATUS_OK, "");
            view.struct_size = sizeof view;
            expect("view (tiles)", msf_result_view(r2, &view), MSF_STATUS_OK, "");
            expect_true("view: a 64x48 frame in 2 merged tiles", view.fit == MSF_FIT_TILES && view.tiles == 2 &&
                                                                       view.tiled && view.covers_frame);
            size_t n = 0;
            expect("num_slots (tiles)", msf_result_num_slots(r2, &n), MSF_STATUS_OK, "");
            expect_true("num_slots (tiles): the merged objects, at least the model's K", n >= info.num_slots);
            uint64_t sum = 0;
            int ok = 1;
            for (uint32_t s = 0; s < n; s++) {
                uint64_t a = 0;
                if (msf_result_area_frame(r2, s, &a) != MSF_STATUS_OK) ok = 0;
                sum += a;
            }
            expect_true("area_frame (tiles): every object readable, together the whole frame", ok && sum == W * H);
            expect("area_frame (tiles): one past the result's objects", msf_result_area_frame(r2, (uint32_t)n, &area),
                   MSF_STATUS_INVALID_ARGUMENT, "out of range");
            MsfTracker *t2 = (MsfTracker *)0x1;
            expect("tracker_create on a tiles decomposer", msf_tracker_create(d2, NULL, &t2),
                   MSF_STATUS_INVALID_ARGUMENT, "MSF_FIT_TILES");
            expect_true("tracker_create (tiles): *out reset to NULL", t2 == NULL);
            msf_result_destroy(r2);
            msf_decomposer_destroy(d2);
        }
    }

    /* ---- wrong handle types, garbage, use after destroy, double destroy ---- */
    MsfResult *res2 = NULL;
    expect("decompose: a result passed as the decomposer",
           msf_decompose((const MsfDecomposer *)res, &img[0][0], W, H, stride, MSF_PIXEL_FORMAT_RGB8, &res2),
           MSF_STATUS_INVALID_HANDLE, "is a live MsfResult, not an MsfDecomposer");
    int local = 0;
    expect("num_slots: pointer to a stack variable", msf_result_num_slots((const MsfResult *)&local, &k),
           MSF_STATUS_INVALID_HANDLE, "not a handle created by this library");
    expect("num_slots: garbage pointer", msf_result_num_slots((const MsfResult *)(uintptr_t)0xdeadbeef, &k),
           MSF_STATUS_INVALID_HANDLE, "not a handle created by this library");
    expect("result_destroy", msf_result_destroy(res), MSF_STATUS_OK, "");
    expect("num_slots: use after destroy", msf_result_num_slots(res, &k), MSF_STATUS_INVALID_HANDLE,
           "already destroyed");
    expect("mask: use after destroy", msf_result_mask(res, &mask, &mw, &mh), MSF_STATUS_INVALID_HANDLE,
           "already destroyed");
    expect("result_destroy: double destroy", msf_result_destroy(res), MSF_STATUS_INVALID_HANDLE, "already destroyed");
    expect("result_destroy: NULL is a no-op", msf_result_destroy(NULL), MSF_STATUS_OK, "");
    expect("decomposer_destroy: a result handle", msf_decomposer_destroy((MsfDecomposer *)res),
           MSF_STATUS_INVALID_HANDLE, "destroyed handle of another type");

    /* ---- trackers ---- */
    MsfTracker *tr = (MsfTracker *)0x1;
    expect("tracker_create: NULL decomposer", msf_tracker_create(NULL, NULL, &tr), MSF_STATUS_NULL_ARGUMENT, "`dec`");
    expect_true("tracker_create: *out reset to NULL", tr == NULL);
    MsfTrackerOptions topts = msf_tracker_options_default();
    topts.temporal = MSF_TEMPORAL_ON;
    expect("tracker_create: temporal on a model without slots_init", msf_tracker_create(dec, &topts, &tr),
           MSF_STATUS_MODEL, "--no-slots-in");
    topts = msf_tracker_options_default();
    topts.iou_weight = 2.0f;
    expect("tracker_create: iou_weight out of range", msf_tracker_create(dec, &topts, &tr),
           MSF_STATUS_INVALID_ARGUMENT, "iou_weight 2");
    expect("tracker_create", msf_tracker_create(dec, NULL, &tr), MSF_STATUS_OK, "");
    expect("tracker_step: the decomposer as the tracker",
           msf_tracker_step((MsfTracker *)dec, &img[0][0], W, H, stride, MSF_PIXEL_FORMAT_RGB8, &res),
           MSF_STATUS_INVALID_HANDLE, "is a live MsfDecomposer, not an MsfTracker");
    expect("tracker_step: stride too small",
           msf_tracker_step(tr, &img[0][0], W, H, 3, MSF_PIXEL_FORMAT_RGB8, &res), MSF_STATUS_INVALID_ARGUMENT,
           "stride 3 bytes");

    /* The tracker keeps the model alive after its decomposer is destroyed. */
    expect("decomposer_destroy", msf_decomposer_destroy(dec), MSF_STATUS_OK, "");
    expect("decompose: use after destroy", msf_decompose(dec, &img[0][0], W, H, stride, MSF_PIXEL_FORMAT_RGB8, &res),
           MSF_STATUS_INVALID_HANDLE, "already destroyed");
    expect("decomposer_destroy: double destroy", msf_decomposer_destroy(dec), MSF_STATUS_INVALID_HANDLE,
           "already destroyed");
    expect("tracker_step after the decomposer is gone",
           msf_tracker_step(tr, &img[0][0], W, H, stride, MSF_PIXEL_FORMAT_RGB8, &res), MSF_STATUS_OK, "");
    expect("result_destroy", msf_result_destroy(res), MSF_STATUS_OK, "");
    expect("tracker_step: Gray8 view of the same bytes",
           msf_tracker_step(tr, &img[0][0], W, H, stride, MSF_PIXEL_FORMAT_GRAY8, &res), MSF_STATUS_OK, "");
    expect("result_destroy", msf_result_destroy(res), MSF_STATUS_OK, "");
    uint64_t frames = 0;
    expect("tracker_frames", msf_tracker_frames(tr, &frames), MSF_STATUS_OK, "");
    expect_true("tracker_frames: 2 steps", frames == 2);
    expect("tracker_reset", msf_tracker_reset(tr), MSF_STATUS_OK, "");
    expect("tracker_destroy", msf_tracker_destroy(tr), MSF_STATUS_OK, "");
    expect("tracker_step: use after destroy",
           msf_tracker_step(tr, &img[0][0], W, H, stride, MSF_PIXEL_FORMAT_RGB8, &res), MSF_STATUS_INVALID_HANDLE,
           "already destroyed");
    expect("tracker_reset: use after destroy", msf_tracker_reset(tr), MSF_STATUS_INVALID_HANDLE, "already destroyed");
    expect("tracker_destroy: double destroy", msf_tracker_destroy(tr), MSF_STATUS_INVALID_HANDLE,
           "already destroyed");
    expect("tracker_destroy: NULL is a no-op", msf_tracker_destroy(NULL), MSF_STATUS_OK, "");
    expect("decomposer_destroy: NULL is a no-op", msf_decomposer_destroy(NULL), MSF_STATUS_OK, "");

    if (failures == 0) {
        printf("abuse: all %d checks ok\n", checks);
        return 0;
    }
    printf("abuse: %d of %d checks FAILED\n", failures, checks);
    return failures;
}

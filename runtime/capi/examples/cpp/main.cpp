// Decompose one image with msf-runtime from C++ and write its object mask.
//
//   msf_example MODEL.onnx IMAGE.ppm MASK.pgm [MODEL_MASK.pgm]
//
// IMAGE is a binary PPM (P6, 8 bits). MASK gets the frame-resolution mask as a binary PGM (P5): the
// slot index of each pixel, 255 (MSF_MASK_VOID) outside the centre crop the model sees. The optional
// MODEL_MASK gets the model-resolution mask (256 x 256) of the crop. A summary goes to stdout.
#include <msf_runtime.hpp>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Image {
    uint32_t width = 0;
    uint32_t height = 0;
    std::vector<uint8_t> rgb;  // packed R G B rows
};

// Next header token of a PNM file, skipping whitespace and # comments.
std::string pnm_token(std::istream& in) {
    std::string tok;
    int c;
    while ((c = in.get()) != EOF) {
        if (c == '#') {
            while ((c = in.get()) != EOF && c != '\n') {
            }
        } else if (std::isspace(c)) {
            if (!tok.empty()) break;
        } else {
            tok.push_back(static_cast<char>(c));
        }
    }
    return tok;
}

Image read_ppm(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(path + ": cannot open");
    if (pnm_token(in) != "P6") throw std::runtime_error(path + ": not a binary PPM (P6)");
    Image img;
    unsigned long w = std::stoul(pnm_token(in)), h = std::stoul(pnm_token(in)), maxval = std::stoul(pnm_token(in));
    if (w == 0 || h == 0 || w > 65535 || h > 65535) throw std::runtime_error(path + ": bad size");
    if (maxval != 255) throw std::runtime_error(path + ": only 8-bit PPM (maxval 255) is supported");
    img.width = static_cast<uint32_t>(w);
    img.height = static_cast<uint32_t>(h);
    img.rgb.resize(static_cast<size_t>(w) * h * 3);
    // pnm_token consumed the single whitespace byte after maxval.
    in.read(reinterpret_cast<char*>(img.rgb.data()), static_cast<std::streamsize>(img.rgb.size()));
    if (in.gcount() != static_cast<std::streamsize>(img.rgb.size())) throw std::runtime_error(path + ": truncated");
    return img;
}

void write_pgm(const std::string& path, const msf::MaskView& m) {
    std::ofstream out(path, std::ios::binary);
    out << "P5\n" << m.width << " " << m.height << "\n255\n";
    out.write(reinterpret_cast<const char*>(m.data), static_cast<std::streamsize>(m.size()));
    if (!out) throw std::runtime_error(path + ": cannot write");
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4 || argc > 5) {
        std::cerr << "usage: " << argv[0] << " MODEL.onnx IMAGE.ppm MASK.pgm [MODEL_MASK.pgm]\n";
        return 2;
    }
    try {
        std::cout << "msf_runtime " << msf::version() << "\n";
        msf::Decomposer dec(argv[1], msf::Options().threads(1));
        MsfModelInfo info = dec.info();
        Image img = read_ppm(argv[2]);

        // Any stride works; packed rows here (stride 0 would mean the same).
        msf::Result r = dec.decompose(img.rgb.data(), img.width, img.height, size_t(img.width) * 3,
                                      msf::PixelFormat::Rgb8);

        MsfCrop crop = r.crop();
        std::cout << "image " << img.width << "x" << img.height << ", crop " << crop.size << " at (" << crop.left
                  << "," << crop.top << "), " << r.num_slots() << " slots of " << r.slot_dim() << " (model: "
                  << info.num_slots << " slots, mask " << info.mask_size << ")\n";
        for (uint32_t k = 0; k < r.num_slots(); ++k) {
            MsfBBox b = r.bbox_in_frame(k);
            std::cout << "slot " << k << ": area " << r.area_in_frame(k) << " px, bbox [" << b.x0 << "," << b.y0
                      << ")-[" << b.x1 << "," << b.y1 << ")\n";
        }
        write_pgm(argv[3], r.mask_in_frame());
        if (argc == 5) write_pgm(argv[4], r.mask());
        return 0;
    } catch (const msf::Error& e) {
        std::cerr << "msf error (status " << static_cast<int>(e.status()) << "): " << e.what() << "\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
}

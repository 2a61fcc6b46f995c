fn main() { engram_build::link_libtorch(); }

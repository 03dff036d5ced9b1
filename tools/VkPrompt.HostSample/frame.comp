#version 450
// The sample host's stand-in for a frame's GPU work: every pixel of a width x height RGBA8 image
// (packed in a storage buffer) gets a colour from a few rounds of trigonometry, so the frame
// costs real GPU time per pixel, as shading does. What is drawn does not matter.
layout(local_size_x = 16, local_size_y = 16) in;
layout(std430, binding = 0) writeonly buffer Image { uint pixels[]; };
layout(push_constant) uniform Push { uint width; uint height; uint frame; uint rounds; } p;

void main()
{
    uvec2 xy = gl_GlobalInvocationID.xy;
    if (xy.x >= p.width || xy.y >= p.height) return;
    vec2 uv = vec2(xy) / vec2(p.width, p.height);
    float t = float(p.frame) * 0.05;
    vec3 c = vec3(uv, 0.5);
    for (uint i = 0; i < p.rounds; i++)
        c = 0.5 + 0.5 * sin(vec3(3.0, 5.0, 7.0) * c.yzx + t);
    pixels[xy.y * p.width + xy.x] = packUnorm4x8(vec4(c, 1.0));
}

/*
 * Does AVX-512 BF16's float -> bfloat16 conversion (vcvtneps2bf16) round to nearest-even like the
 * kernel's integer path? Prints every input where they differ. Not built by default:
 *   gcc -O2 -mavx512f -mavx512bf16 bench/c/bf16_convert_probe.c -o /tmp/bf16_probe && /tmp/bf16_probe
 */
#include <immintrin.h>
#include <stdio.h>
#include <string.h>
#include <stdint.h>
static uint16_t rne(float f){uint32_t u;memcpy(&u,&f,4); if((u&0x7fffffff)>0x7f800000) return (u>>16)|0x40; u+=0x7fff+((u>>16)&1); return u>>16;}
int main(){
  float v[16]; uint32_t bits[16]={0x00000001,0x00400000,0x007fffff,0x00018000,0x3f808000,0x3f818000,0x7f7fffff,0x7fc00001,0xffa00001,0x80000001,0x00800000,0x3f800001,0x3f80ffff,0x7f800000,0xff800000,0x00000000};
  memcpy(v,bits,64);
  __m512 a=_mm512_loadu_ps(v); __m256bh r=_mm512_cvtneps_pbh(a); uint16_t o[16]; memcpy(o,&r,32);
  int diff=0; for(int i=0;i<16;i++){ if(o[i]!=rne(v[i])) {printf("in %08x: insn %04x rne %04x\n",bits[i],o[i],rne(v[i])); diff++;}}
  printf("%d differ\n",diff);
}

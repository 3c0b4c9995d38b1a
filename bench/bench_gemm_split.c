/* The row- vs column-split measurement behind sf_matmul (templates/c/runtime.h): two
 * OpenMP threads each run a single-threaded OpenBLAS sgemm on one half of an M x N x K
 * product, split by rows (0) or columns (1); a later 512x512x128 call shows OpenBLAS's
 * state dependence. Build: gcc -O2 -fopenmp bench/bench_gemm_split.c \
 *   -L$(python -c "import scipy_openblas32 as s; print(s.get_lib_dir())") -lscipy_openblas \
 *   -Wl,-rpath,<same dir> -o /tmp/gemm_split && /tmp/gemm_split 0 128 512 784 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <omp.h>
void scipy_cblas_sgemm(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
void scipy_openblas_set_num_threads(int);
static double now(){struct timespec t; clock_gettime(CLOCK_MONOTONIC,&t); return t.tv_sec+t.tv_nsec*1e-9;}
float *A,*B,*C;
int bycol;
void par(int M,int N,int K){
  #pragma omp parallel for schedule(static)
  for(int p=0;p<2;p++) if(bycol) scipy_cblas_sgemm(101,111,111,M,N/2,K,1,A,K,B+p*(N/2),N,0,C+p*(N/2),N);
   else scipy_cblas_sgemm(101,111,111,M/2,N,K,1,A+p*(M/2)*K,K,B,N,0,C+p*(M/2)*N,N);
}
int main(int argc,char**argv){
  bycol=atoi(argv[1]); int M=atoi(argv[2]),N=atoi(argv[3]),K=atoi(argv[4]);
  A=(float*)malloc(4*1024*1024); B=(float*)malloc(4*1024*1024); C=(float*)malloc(4*1024*1024);
  for(int i=0;i<1000*1000;i++)A[i]=rand()/(float)RAND_MAX;
  for(int i=0;i<1000*1000;i++)B[i]=rand()/(float)RAND_MAX;
  scipy_openblas_set_num_threads(1);
  for(int r=0;r<5;r++){ double t=now(); for(int i=0;i<20;i++) par(M,N,K); printf("%.3f ",(now()-t)/20*1e3);}
  par(512,512,128);
  for(int r=0;r<3;r++){ double t=now(); for(int i=0;i<20;i++) par(M,N,K); printf("after %.3f ",(now()-t)/20*1e3);}
  printf("\n");
}

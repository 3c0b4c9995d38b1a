/* Collectives of the cpu target (ir/ops/collective.py) on MPI: included by the
 * kernels of a unit that has some, which is then linked with the MPI library that
 * mpi4py uses (mpicc -show). Those kernels and sf_entry share one unit, so the
 * communicator below and each pending request are the entry's. */
#ifndef SF_MPI_H
#define SF_MPI_H
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <limits.h>
#include <stdint.h>

/* Set when Python loads the unit (CompiledModule): the communicator mpi4py hands over. */
static MPI_Comm sf_mpi_comm = MPI_COMM_NULL;

__attribute__((visibility("default"))) int sf_mpi_bind(int64_t fortran_handle) {
  sf_mpi_comm = MPI_Comm_f2c((MPI_Fint)fortran_handle);
  int size = -1;
  if (MPI_Comm_size(sf_mpi_comm, &size) != MPI_SUCCESS) return -1;
  return size;
}

/* A failed collective leaves the ranks' states apart: say which rank and call, and
 * end the job (mpiexec then stops the other ranks) rather than compute on. */
static void sf_mpi_check(int rc, const char *what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0, rank = -1;
  MPI_Error_string(rc, msg, &len);
  MPI_Comm_rank(sf_mpi_comm, &rank);
  fprintf(stderr, "symfuse: rank %d: %s failed: %s\n", rank, what, msg);
  fflush(stderr);
  MPI_Abort(sf_mpi_comm, 1);
}

/* MPI counts are ints: a run-time size past INT_MAX elements ends the job as a failed call does */
static int sf_mpi_count(int64_t n, const char *what) {
  if (n <= INT_MAX) return (int)n;
  int rank = -1;
  MPI_Comm_rank(sf_mpi_comm, &rank);
  fprintf(stderr, "symfuse: rank %d: %s of %lld elements exceeds MPI's int count\n", rank, what, (long long)n);
  fflush(stderr);
  MPI_Abort(sf_mpi_comm, 1);
  return 0;
}

/* A started non-blocking allreduce and what its wait still has to do (the mean's division). */
typedef struct {
  MPI_Request request;
  void *buf;
  int64_t n;
  int divisor;          /* > 1: divide by it after the sum (float32 / float64 only) */
  int is_double;
} sf_mpi_pending;

static void sf_mpi_divide(void *buf, int64_t n, int divisor, int is_double) {
  if (divisor <= 1) return;
  if (is_double) {
    double *x = (double *)buf, d = (double)divisor;
    for (int64_t i = 0; i < n; ++i) x[i] = x[i] / d;
  } else {
    float *x = (float *)buf, d = (float)divisor;
    for (int64_t i = 0; i < n; ++i) x[i] = x[i] / d;
  }
}

static void sf_mpi_allreduce(const void *in, void *out, int64_t n, MPI_Datatype t, int divisor, int is_double) {
  sf_mpi_check(MPI_Allreduce(in == out ? MPI_IN_PLACE : in, out, sf_mpi_count(n, "MPI_Allreduce"), t, MPI_SUM, sf_mpi_comm), "MPI_Allreduce");
  sf_mpi_divide(out, n, divisor, is_double);
}

static void sf_mpi_iallreduce(sf_mpi_pending *p, void *buf, int64_t n, MPI_Datatype t, int divisor, int is_double) {
  p->buf = buf; p->n = n; p->divisor = divisor; p->is_double = is_double;
  sf_mpi_check(MPI_Iallreduce(MPI_IN_PLACE, buf, sf_mpi_count(n, "MPI_Iallreduce"), t, MPI_SUM, sf_mpi_comm, &p->request), "MPI_Iallreduce");
}

static void sf_mpi_wait(sf_mpi_pending *p) {
  sf_mpi_check(MPI_Wait(&p->request, MPI_STATUS_IGNORE), "MPI_Wait (allreduce)");
  sf_mpi_divide(p->buf, p->n, p->divisor, p->is_double);
}

static void sf_mpi_broadcast(const void *in, void *out, int64_t n, int64_t bytes, MPI_Datatype t, int root) {
  if (in != out) memcpy(out, in, (size_t)bytes);
  sf_mpi_check(MPI_Bcast(out, sf_mpi_count(n, "MPI_Bcast"), t, root, sf_mpi_comm), "MPI_Bcast");
}

static void sf_mpi_reduce(const void *in, void *out, int64_t n, int64_t bytes, MPI_Datatype t, int root) {
  int rank = -1;
  MPI_Comm_rank(sf_mpi_comm, &rank);
  if (rank == root) {
    sf_mpi_check(MPI_Reduce(in == out ? MPI_IN_PLACE : in, out, sf_mpi_count(n, "MPI_Reduce"), t, MPI_SUM, root, sf_mpi_comm), "MPI_Reduce");
  } else {
    sf_mpi_check(MPI_Reduce(in, NULL, sf_mpi_count(n, "MPI_Reduce"), t, MPI_SUM, root, sf_mpi_comm), "MPI_Reduce");
    memset(out, 0, (size_t)bytes);
  }
}

static void sf_mpi_allgather(const void *in, void *out, int64_t n, MPI_Datatype t) {
  sf_mpi_check(MPI_Allgather(in, sf_mpi_count(n, "MPI_Allgather"), t, out, sf_mpi_count(n, "MPI_Allgather"), t, sf_mpi_comm), "MPI_Allgather");
}

static void sf_mpi_reduce_scatter(const void *in, void *out, int64_t n_out, MPI_Datatype t) {
  sf_mpi_check(MPI_Reduce_scatter_block(in, out, sf_mpi_count(n_out, "MPI_Reduce_scatter_block"), t, MPI_SUM, sf_mpi_comm), "MPI_Reduce_scatter_block");
}
#endif

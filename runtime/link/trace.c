#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <sys/user.h>
#define LO 0x200000UL
#define HI 0x900000UL
static unsigned char hit[HI-LO];
int main(int argc,char**argv){
  pid_t p=fork();
  if(!p){ptrace(PTRACE_TRACEME,0,0,0);execv(argv[2],argv+2);_exit(127);}
  int st; waitpid(p,&st,0);
  ptrace(PTRACE_SETOPTIONS,p,0,PTRACE_O_TRACECLONE|PTRACE_O_TRACEFORK|PTRACE_O_TRACEVFORK|PTRACE_O_TRACEEXEC|0);
  long n=0; int live=1;
  ptrace(PTRACE_SINGLESTEP,p,0,0);
  while(live>0){
    pid_t q=waitpid(-1,&st,__WALL); if(q<0)break;
    if(WIFEXITED(st)||WIFSIGNALED(st)){live--; if(q==p)break; continue;}
    if(!WIFSTOPPED(st))continue;
    int sig=WSTOPSIG(st), ev=st>>16;
    if(ev==PTRACE_EVENT_EXEC){ ptrace(PTRACE_DETACH,q,0,0); live--; continue;}
    if(ev==PTRACE_EVENT_CLONE||ev==PTRACE_EVENT_FORK||ev==PTRACE_EVENT_VFORK){ live++; ptrace(PTRACE_SINGLESTEP,q,0,0); continue;}
    struct user_regs_struct r; 
    if(ptrace(PTRACE_GETREGS,q,0,&r)==0 && r.rip>=LO&&r.rip<HI) hit[r.rip-LO]=1;
    n++;
    int inj=0;
    if(sig!=SIGTRAP && sig!=SIGSTOP) inj=sig;
    if(sig==SIGSTOP && ev==0){ /* new child initial stop or real stop: swallow */ }
    ptrace(PTRACE_SINGLESTEP,q,0,inj);
  }
  FILE*f=fopen(argv[1],"w"); for(unsigned long i=0;i<HI-LO;i++) if(hit[i]) fprintf(f,"%lx\n",i+LO); fclose(f);
  fprintf(stderr,"steps %ld\n",n); return 0;}
